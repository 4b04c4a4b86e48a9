using Loom.Inference.Scheduling;

namespace Loom.Inference.Tests.Serving;

/// <summary>The scheduler alone, over a fake memory that counts blocks of 4 tokens: decodes first, prefill in
/// chunks under the token budget, admission only when the first chunk fits, preemption of the newest by recompute.</summary>
public sealed class SchedulerTests
{
    /// <summary>Holds <paramref name="blocks"/> blocks of 4 positions; a sequence holds ceil(tokens / 4).</summary>
    private sealed class BlockMemory(int blocks) : ISequenceMemory
    {
        public readonly Dictionary<Sequence, int> Held = [];
        public int Free => blocks - Held.Values.Sum();

        public Reservation TryReserve(Sequence s, int tokens)
        {
            int need = (tokens + 3) / 4 - Held.GetValueOrDefault(s);
            if (need <= 0) return Reservation.Reserved;
            if (need > Free) return Reservation.NoRoom;
            Held[s] = Held.GetValueOrDefault(s) + need;
            return Reservation.Reserved;
        }

        public void Release(Sequence s) => Held.Remove(s);
    }

    private static Sequence Seq(int id, int prompt, int max = 100) => new(id, Enumerable.Range(1, prompt).ToArray(), prompt + max, null);

    /// <summary>Runs the plan: marks the chunks computed and appends a token to every sequence whose chunk sampled.</summary>
    private static void Run(Scheduler s, SchedulerOutput o)
    {
        var sampled = o.Chunks.Where(c => c.Samples).Select(c => c.Sequence).ToList();
        s.Completed(o);
        foreach (var q in sampled) q.Append(7);
    }

    [Fact]
    public void DecodesGoFirstAndPrefillsAreChunkedUnderTheBudget()
    {
        var mem = new BlockMemory(1000);
        var s = new Scheduler(new FcfsPolicy(), mem, new SchedulerLimits(TokenBudget: 10, MaxRunning: 8, PrefillChunk: 4));
        var a = Seq(1, 3);
        s.Add(a);
        var o = s.Schedule();
        Assert.Equal([new ScheduledChunk(a, 0, 3)], o.Chunks);
        Run(s, o);
        var b = Seq(2, 20);
        s.Add(b);
        for (int step = 0; step < 6; step++)
        {
            o = s.Schedule();
            Assert.True(o.Tokens <= 10);
            Assert.Equal(a, o.Chunks[0].Sequence);   // the decode is never stalled by the prefill
            Assert.Equal(1, o.Chunks[0].Count);
            if (b.Pending > 1) Assert.Equal(Math.Min(4, b.Pending), o.Chunks.Single(c => c.Sequence == b).Count);
            Run(s, o);
        }
        Assert.True(b.Generated >= 1);   // 20 prompt tokens in chunks of 4: 5 iterations, then a token
    }

    [Fact]
    public void AdmissionWaitsForMemoryAndPreemptionTakesTheNewest()
    {
        var mem = new BlockMemory(6);   // 24 positions
        var s = new Scheduler(new FcfsPolicy(), mem, new SchedulerLimits(64, 8, 64));
        var old = Seq(1, 8);
        var mid = Seq(2, 8);
        var late = Seq(3, 8);
        s.Add(old); s.Add(mid); s.Add(late);
        var o = s.Schedule();
        Assert.Equal(3, o.Chunks.Count);   // 3 × 2 blocks: the pool is full
        Run(s, o);
        Assert.Equal(0, mem.Free);
        // next decode step: each needs a third block; the newest is preempted (recompute), which frees room for both others
        o = s.Schedule();
        Assert.Equal([late], o.Preempted);
        Assert.Equal([old, mid], o.Chunks.Select(c => c.Sequence));
        Assert.Equal((0, SequenceStatus.Waiting), (late.Computed, late.Status));
        Assert.False(mem.Held.ContainsKey(late));
        Assert.DoesNotContain(s.Waiting, w => w.Status != SequenceStatus.Waiting);
        Run(s, o);
        // no room yet: the preempted sequence waits (nothing is admitted while memory is short)
        o = s.Schedule();
        Assert.Equal([old, mid], o.Chunks.Select(c => c.Sequence));
        Run(s, o);
        // once there is room it comes back and recomputes its prompt and the token it had generated
        s.Remove(old);
        o = s.Schedule();
        Assert.Equal([mid, late], o.Chunks.Select(c => c.Sequence));
        Assert.Equal(9, o.Chunks[1].Count);
        Assert.True(o.Chunks[1].Samples);
        Assert.Equal(1, s.Preemptions);
    }

    [Fact]
    public void ASequenceThatCannotGrowEvenAloneIsReportedAndItsMemoryFreed()
    {
        var mem = new BlockMemory(2);
        var s = new Scheduler(new FcfsPolicy(), mem, new SchedulerLimits(64, 8, 64));
        var a = Seq(1, 8);
        s.Add(a);
        Run(s, s.Schedule());
        var o = s.Schedule();
        Assert.Equal([a], o.OutOfMemory);
        Assert.Empty(o.Chunks);
        Assert.Empty(mem.Held);
        Assert.True(s.IsIdle);
    }

    [Fact]
    public void AFailedAdmissionIsReportedAndTheQueueMovesOn()
    {
        var mem = new BlockMemory(100);
        var throwing = new ThrowingFor(mem, 1);
        var s = new Scheduler(new FcfsPolicy(), throwing, new SchedulerLimits(64, 8, 64));
        var bad = Seq(1, 4);
        var good = Seq(2, 4);
        s.Add(bad); s.Add(good);
        var o = s.Schedule();
        Assert.Equal(bad, Assert.Single(o.Failed).Sequence);
        Assert.Equal([good], o.Chunks.Select(c => c.Sequence));
        Assert.Equal(SequenceStatus.Finished, bad.Status);
    }

    /// <summary>Sequence <paramref name="id"/> cannot be placed until <see cref="Ready"/> (as while its adapter is read).</summary>
    private sealed class NotYetFor(BlockMemory inner, long id) : ISequenceMemory
    {
        public bool Ready;
        public Reservation TryReserve(Sequence s, int tokens) => s.Id == id && !Ready ? Reservation.NotYet : inner.TryReserve(s, tokens);
        public bool CanStart(Sequence s) => s.Id != id || Ready;
        public void Release(Sequence s) => inner.Release(s);
    }

    /// <summary>Admits sequences never preempted first (then FCFS), names the newest running sequence with computed
    /// tokens as a fairness victim whenever asked, and counts the asks.</summary>
    private sealed class EagerFairness : ISchedulingPolicy
    {
        private readonly FcfsPolicy _fcfs = new();
        public int Asked;
        public Sequence NextToAdmit(IReadOnlyList<Sequence> waiting) => waiting.MinBy(s => (s.Preemptions, s.Arrival))!;
        public Sequence ChooseVictim(IReadOnlyList<Sequence> running) => _fcfs.ChooseVictim(running);
        public void OnServed(Sequence sequence, int promptTokens, int generatedTokens) { }
        public Sequence? FairnessVictim(IReadOnlyList<Sequence> waiting, IReadOnlyList<Sequence> running)
        {
            Asked++;
            return running.Where(r => r.Computed > 0).MaxBy(r => r.Arrival);
        }
    }

    [Theory]
    [InlineData(8)] // a free slot: the reservation says not yet
    [InlineData(2)] // no free slot: asked before any preemption for it
    public void ASequenceThatCannotStartYetPreemptsNobodyAndTheQueueBehindItMovesOn(int maxRunning)
    {
        var memory = new NotYetFor(new BlockMemory(100), 3);
        var policy = new EagerFairness();
        var s = new Scheduler(policy, memory, new SchedulerLimits(64, maxRunning, 64));
        var running = new[] { Seq(1, 4), Seq(2, 4) };
        foreach (var q in running) s.Add(q);
        Run(s, s.Schedule());
        var slow = Seq(3, 4);
        s.Add(slow);
        var later = Seq(4, 4); // behind it: with a free slot, admitted this round
        if (maxRunning > 2) s.Add(later);

        var o = s.Schedule();
        Assert.Equal(SequenceStatus.Waiting, slow.Status);
        Assert.Contains(slow, s.Waiting);
        Assert.DoesNotContain(o.Chunks, c => c.Sequence == slow);
        Assert.Equal(maxRunning > 2, o.Chunks.Any(c => c.Sequence == later));
        Assert.Equal(0, policy.Asked); // the policy was never asked to preempt for it
        Assert.Empty(o.Preempted);
        Run(s, o);

        memory.Ready = true;
        Run(s, s.Schedule()); // it can start: with no free slot, the policy now preempts for it
        Assert.Equal(SequenceStatus.Running, slow.Status);
    }

    private sealed class ThrowingFor(BlockMemory inner, long id) : ISequenceMemory
    {
        public Reservation TryReserve(Sequence s, int tokens) =>
            s.Id == id ? throw new InvalidOperationException("adapter 'x' was unregistered") : inner.TryReserve(s, tokens);

        public void Release(Sequence s) => inner.Release(s);
    }

    /// <summary>Blocks of 4 positions whose swaps take time: a swapped-out sequence's blocks stay taken until
    /// <see cref="FinishCopies"/>, and a swapped-in one is not ready until then either.</summary>
    private sealed class SlowSwapMemory(int blocks) : ISwappingMemory
    {
        public readonly Dictionary<Sequence, int> Held = [], CopyingOut = [];
        public readonly HashSet<Sequence> SwappedOut = [], CopyingIn = [];
        public int Free => blocks - Held.Values.Sum() - CopyingOut.Values.Sum();

        public Reservation TryReserve(Sequence s, int tokens)
        {
            if (CopyingOut.ContainsKey(s)) return Reservation.NoRoom;
            int need = (tokens + 3) / 4 - Held.GetValueOrDefault(s);
            if (need > Free) return Reservation.NoRoom;
            if (need > 0) Held[s] = Held.GetValueOrDefault(s) + need;
            if (SwappedOut.Remove(s)) CopyingIn.Add(s);
            return Reservation.Reserved;
        }

        public void Release(Sequence s)
        {
            Held.Remove(s);
            CopyingOut.Remove(s);
            SwappedOut.Remove(s);
            CopyingIn.Remove(s);
        }

        public bool TrySwapOut(Sequence s)
        {
            if (s.Computed == 0 || !Held.Remove(s, out int held)) return false;
            CopyingOut[s] = held;
            SwappedOut.Add(s);
            return true;
        }

        public bool IsReady(Sequence s) => !CopyingIn.Contains(s);

        public bool RoomPending(Sequence s, int tokens) =>
            CopyingOut.Count > 0 && (tokens + 3) / 4 - Held.GetValueOrDefault(s) <= Free + CopyingOut.Values.Sum();

        public void FinishCopies()
        {
            CopyingOut.Clear();
            CopyingIn.Clear();
        }
    }

    [Fact]
    public void WhileASwapCopyRunsTheSequenceThatNeedsItsPagesWaitsInsteadOfPreemptingMoreAndASwappedInOneRunsOnceCopied()
    {
        var mem = new SlowSwapMemory(8);
        var s = new Scheduler(new FcfsPolicy(), mem, new SchedulerLimits(TokenBudget: 64, MaxRunning: 8, PrefillChunk: 64));
        Sequence a = Seq(1, 16), b = Seq(2, 14);
        s.Add(a);
        s.Add(b);
        Run(s, s.Schedule());                     // a and b prefilled: 4 blocks each, the memory is full
        Assert.Equal(0, mem.Free);

        // a's next token needs a fifth block: b (the newest) is swapped out, and its copy is still under way
        var o = s.Schedule();
        Assert.Equal([b], o.Preempted);
        Assert.Empty(o.Chunks);                   // a sits the iteration out; nothing else is preempted
        Run(s, o);
        o = s.Schedule();
        Assert.Empty(o.Preempted);
        Assert.Empty(o.Chunks);
        Assert.Equal(1, s.Preemptions);

        mem.FinishCopies();                       // b's blocks come back: a grows and decodes; b waits for room
        o = s.Schedule();
        Assert.Equal([new ScheduledChunk(a, 16, 1)], o.Chunks);
        Assert.Equal([b], s.Waiting);
        Run(s, o);

        s.Remove(a);                              // a leaves: b is admitted, but runs only once its copy back is done
        o = s.Schedule();
        Assert.Equal([b], s.Running);
        Assert.Empty(o.Chunks);
        Run(s, o);
        mem.FinishCopies();
        o = s.Schedule();
        Assert.Equal([new ScheduledChunk(b, 14, 1)], o.Chunks); // from where it was: nothing recomputed
        Assert.Equal(0, s.RecomputeTokens);
    }
}
