namespace Loom.Inference.Scheduling;

/// <summary>Limits of one iteration.</summary>
/// <param name="TokenBudget">Tokens (decodes + prefill chunks) per forward pass.</param>
/// <param name="MaxRunning">Sequences in the running set.</param>
/// <param name="PrefillChunk">Most prompt tokens of one sequence per iteration.</param>
public readonly record struct SchedulerLimits(int TokenBudget, int MaxRunning, int PrefillChunk)
{
    public void Validate()
    {
        if (TokenBudget < 1) throw new ArgumentOutOfRangeException(nameof(TokenBudget), "the token budget must be at least 1");
        if (MaxRunning < 1) throw new ArgumentOutOfRangeException(nameof(MaxRunning), "at least one running sequence");
        if (PrefillChunk < 1) throw new ArgumentOutOfRangeException(nameof(PrefillChunk), "the prefill chunk must be at least 1");
    }
}

/// <summary>Iteration-level (continuous) batching under a token budget, with chunked prefill (Sarathi-Serve): each
/// iteration first gives every running decode its token, then spends what is left of the budget on prefill chunks of
/// running sequences, then admits waiting sequences in the policy's order while memory for their first chunk can be
/// reserved. When a running sequence cannot grow, the policy's victim (FCFS: the newest) is preempted: its cache is swapped
/// to host memory when the memory supports it and the prefix is long enough, else dropped and recomputed. When the head
/// of the queue is blocked, the policy may name a running sequence to preempt for it (VTC: fairness). The policy hears
/// of every sequence that starts or stops waiting, is admitted or leaves.
/// Single-threaded: the engine loop calls everything.</summary>
public sealed class Scheduler
{
    private readonly ISchedulingPolicy _policy;
    private readonly ISequenceMemory _memory;
    private readonly ISwappingMemory? _swapping;
    private readonly SchedulerLimits _limits;
    private readonly List<Sequence> _waiting = [];
    private readonly List<Sequence> _running = [];
    private readonly List<Sequence> _order = [];
    private readonly List<Sequence> _notYet = []; // waiting sequences set aside for this admission round (adapter being read)
    private readonly SchedulerOutput _output = new();
    private long _arrivals;
    private bool _waitsForPages; // this iteration, a running sequence waits for swapped-out pages to come back

    public Scheduler(ISchedulingPolicy policy, ISequenceMemory memory, SchedulerLimits limits)
    {
        limits.Validate();
        _policy = policy;
        _memory = memory;
        _swapping = memory as ISwappingMemory;
        _limits = limits;
    }

    public SchedulerLimits Limits => _limits;
    public IReadOnlyList<Sequence> Waiting => _waiting;
    public IReadOnlyList<Sequence> Running => _running;
    public bool IsIdle => _waiting.Count == 0 && _running.Count == 0;
    /// <summary>Preemptions of all kinds: for memory (a running sequence could not grow) and for fairness.</summary>
    public long Preemptions { get; private set; }
    /// <summary>Preemptions the policy asked for so that a less-served waiting sequence could run.</summary>
    public long FairnessPreemptions { get; private set; }
    /// <summary>Preemptions whose cache went to host memory (the rest were dropped, to be recomputed).</summary>
    public long SwapPreemptions { get; private set; }
    /// <summary>Computed tokens dropped by preemption, to be computed again.</summary>
    public long RecomputeTokens { get; private set; }

    public void Add(Sequence s)
    {
        if (s.Arrival >= 0) throw new InvalidOperationException($"sequence {s.Id} was already added");
        if (s.Pending < 1) throw new ArgumentException("a sequence needs at least one token");
        s.Arrival = _arrivals++;
        s.Status = SequenceStatus.Waiting;
        _waiting.Add(s);
        _policy.OnWaiting(s);
    }

    /// <summary>Removes a sequence (finished, cancelled or failed) and frees its memory. False if it was not here.</summary>
    public bool Remove(Sequence s)
    {
        bool found = _running.Remove(s) || _waiting.Remove(s);
        if (!found) return false;
        _memory.Release(s);
        s.Status = SequenceStatus.Finished;
        _policy.OnDeparted(s);
        return true;
    }

    /// <summary>Records that the chunks of the last <see cref="Schedule"/> ran: their tokens are now in the cache.</summary>
    public void Completed(SchedulerOutput output)
    {
        foreach (var c in output.Chunks)
        {
            if (c.Sequence.Status != SequenceStatus.Running) continue;
            c.Sequence.Computed = c.Start + c.Count;
            int prompt = Math.Max(0, Math.Min(c.Start + c.Count, c.Sequence.PromptLength) - c.Start);
            _policy.OnServed(c.Sequence, prompt, c.Count - prompt);
        }
    }

    public SchedulerOutput Schedule()
    {
        var o = _output;
        o.Clear();
        int budget = _limits.TokenBudget;
        _order.Clear();
        _order.AddRange(_running);
        _order.Sort(static (a, b) => a.Arrival.CompareTo(b.Arrival));

        // decodes first (one token each), then prefill chunks of running sequences; a sequence whose cache is still
        // being copied back from host memory sits this iteration out
        _waitsForPages = false;
        for (int phase = 0; phase < 2; phase++)
        {
            foreach (var s in _order)
            {
                if (budget == 0) break;
                if (s.Status != SequenceStatus.Running || (s.Pending == 1) != (phase == 0)) continue;
                if (_swapping is not null && !_swapping.IsReady(s)) continue;
                int n = phase == 0 ? 1 : Math.Min(Math.Min(s.Pending, _limits.PrefillChunk), budget);
                if (!Grow(s, n, ref budget)) continue;
                o.Chunks.Add(new ScheduledChunk(s, s.Computed, n));
                budget -= n;
            }
        }

        // admit waiting sequences (none in an iteration that had to preempt for memory, or where a running sequence
        // waits for pages to come back: memory is short). When the running limit or memory blocks the head, the policy
        // may preempt a running sequence for it (fairness); not while pages it could take are still being copied out.
        // A sequence that cannot start yet for a reason of its own (its adapter is being read) is set aside for this
        // round: nothing is preempted for it and the sequences behind it may be admitted.
        bool memoryShort = o.Preempted.Count > 0 || o.OutOfMemory.Count > 0 || _waitsForPages;
        int fairnessPreemptions = 0;
        while (budget > 0 && !memoryShort && _waiting.Count > 0)
        {
            var s = _policy.NextToAdmit(_waiting);
            int n = 0;
            var reservation = Reservation.NoRoom;
            bool slot = _running.Count < _limits.MaxRunning;
            try
            {
                if (_memory.Attach(s) == Reservation.NotYet) reservation = Reservation.NotYet; // (its cached prefix is attached now)
                else
                {
                    n = Math.Min(Math.Min(s.Pending, _limits.PrefillChunk), budget);
                    if (slot) reservation = _memory.TryReserve(s, s.Computed + n);
                    else if (!_memory.CanStart(s)) reservation = Reservation.NotYet;
                }
            }
            catch (Exception e)
            {
                _waiting.Remove(s);
                _memory.Release(s);
                s.Status = SequenceStatus.Finished;
                _policy.OnDeparted(s);
                o.Failed.Add((s, e));
                continue;
            }
            if (reservation == Reservation.NotYet)
            {
                _waiting.Remove(s);
                _notYet.Add(s);
                continue;
            }
            if (reservation == Reservation.NoRoom)
            {
                // the head waits; later arrivals do not overtake it, unless the policy preempts for it
                if (slot && _swapping is not null && _swapping.RoomPending(s, s.Computed + n)) break;
                if (fairnessPreemptions == _limits.MaxRunning || _policy.FairnessVictim(_waiting, _running) is not { } victim) break;
                Preempt(victim, ref budget);
                fairnessPreemptions++;
                FairnessPreemptions++;
                continue;
            }
            _waiting.Remove(s);
            s.Status = SequenceStatus.Running;
            _running.Add(s);
            _policy.OnAdmitted(s);
            if (_swapping is not null && !_swapping.IsReady(s)) continue; // its cache is on its way back: it runs next time
            o.Chunks.Add(new ScheduledChunk(s, s.Computed, n));
            budget -= n;
        }
        _waiting.AddRange(_notYet); // still waiting, as far as anyone outside this round can tell
        _notYet.Clear();
        o.Tokens = _limits.TokenBudget - budget;
        return o;
    }

    /// <summary>Reserves room for n more tokens of a running sequence, preempting the policy's victims until it fits.
    /// False when the sequence itself was preempted, cannot fit at all, waits for pages being copied out, or cannot be
    /// placed yet for a reason of its own (then it sits this iteration out and nobody is preempted).</summary>
    private bool Grow(Sequence s, int n, ref int budget)
    {
        while (_memory.TryReserve(s, s.Computed + n) is var reservation && reservation != Reservation.Reserved)
        {
            if (reservation == Reservation.NotYet) return false;
            if (_swapping is not null && _swapping.RoomPending(s, s.Computed + n))
            {
                // pages of sequences swapped out are on their way back: wait for them (this iteration without it)
                _waitsForPages = true;
                return false;
            }
            if (_running.Count == 1)
            {
                // alone in the pool and still no room: it can never grow
                _running.Remove(s);
                _memory.Release(s);
                s.Status = SequenceStatus.Finished;
                _policy.OnDeparted(s);
                _output.OutOfMemory.Add(s);
                return false;
            }
            var victim = _policy.ChooseVictim(_running);
            Preempt(victim, ref budget);
            if (victim == s) return false;
        }
        return true;
    }

    private void Preempt(Sequence v, ref int budget)
    {
        for (int i = _output.Chunks.Count - 1; i >= 0; i--)
        {
            if (_output.Chunks[i].Sequence != v) continue;
            budget += _output.Chunks[i].Count;
            _output.Chunks.RemoveAt(i);
        }
        _running.Remove(v);
        if (_memory is ISwappingMemory swap && swap.TrySwapOut(v)) SwapPreemptions++; // its computed tokens come back on admission
        else
        {
            _memory.Release(v);
            RecomputeTokens += v.Computed;
            v.Computed = 0;
        }
        v.Preemptions++;
        v.Status = SequenceStatus.Waiting;
        _waiting.Add(v);
        _output.Preempted.Add(v);
        Preemptions++;
        _policy.OnWaiting(v);
    }
}
