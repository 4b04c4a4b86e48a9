using System.Collections.Concurrent;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Checkpoints the loop takes by its <see cref="CheckpointSchedule"/>: at exact steps, copied into the run's
/// staging buffers and handed over while training goes on, with back-pressure on writes that have not completed (the
/// loop completes no more than LagSteps steps past one; with 0 the next step's forward and backward still run and only
/// its update waits), the wait counted as stall; the result is unchanged.</summary>
public sealed class CheckpointScheduleTests(ITestOutputHelper log) : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    /// <summary>Stand-in for the checkpoint writer: keeps every snapshot with the task that says it is written.</summary>
    private sealed class Writes
    {
        public readonly ConcurrentQueue<(TrainingSnapshot Snapshot, TaskCompletionSource Written)> All = new();
        /// <summary>From now on every write completes at once.</summary>
        public volatile bool Instant;
        /// <summary>Reads each snapshot's tensors when it is handed over, as a writer does before its write completes.</summary>
        public bool Read = true;
        public Task Persist(TrainingSnapshot s)
        {
            if (Read) _ = s.Modules;
            var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (Instant) written.SetResult();
            All.Enqueue((s, written));
            return written.Task;
        }
        public (TrainingSnapshot Snapshot, TaskCompletionSource Written) this[int i] => All.ElementAt(i);
    }

    [Fact]
    public async Task TheLoopWaitsAtTheNextCheckpointForAWriteStillGoingAndEndsBitwiseEqual()
    {
        var g = TrainingGolden.Load("qwen2_bias_adamw_cosine");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 6);
        var whole = await TrainingHarness.Finish(engine.SubmitTraining(request));
        Assert.True(whole.Steps >= 8, $"{whole.Steps} steps");

        var writes = new Writes();
        var run = engine.SubmitTraining(request with { OutputFolder = _h.Folder(), Checkpoints = new CheckpointSchedule(2, 2, writes.Persist) });
        // The write of step 2 does not complete: the loop takes step 2's snapshot, trains to step 4 and waits there.
        await Until(() => run.Latest.Step >= 4);
        await Task.Delay(400);
        Assert.Equal(4, run.Latest.Step);
        Assert.Single(writes.All);
        Assert.Equal(2, writes[0].Snapshot.Step);

        writes[0].Written.SetResult();
        await Until(() => writes.All.Count >= 2);
        var second = writes[1].Snapshot;
        Assert.Equal(4, second.Step);
        log.WriteLine($"stall before the checkpoint at step 4: {second.Stall.TotalMilliseconds:F0} ms (the loop waited for step 2's write)");
        Assert.True(second.Stall >= TimeSpan.FromMilliseconds(350), $"stall {second.Stall}");
        await Until(() => run.Latest.Step >= 6);
        await Task.Delay(200);
        Assert.Equal(6, run.Latest.Step);

        // From here every write completes at once: the run ends, never waiting, with the uninterrupted run's adapter.
        writes.Instant = true;
        writes[1].Written.SetResult();
        var result = await TrainingHarness.Finish(run);
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(result));
        var steps = writes.All.Select(w => w.Snapshot.Step).ToList();
        Assert.Equal(Enumerable.Range(1, (whole.Steps - 1) / 2).Select(i => 2 * i), steps);
        // A checkpoint restores like any snapshot.
        var resumed = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), ResumeFrom = writes[1].Snapshot }));
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(resumed));
    }

    [Fact]
    public async Task WithNoLagTheNextUpdateWaitsForEachWriteWhileItsForwardAndBackwardRun()
    {
        var g = TrainingGolden.Load("qwen2_bias_adamw_cosine");
        var engine = _h.Engine(g.Model);
        var writes = new Writes();
        var run = engine.SubmitTraining(_h.Plain(g, epochs: 6) with { Checkpoints = new CheckpointSchedule(3, 0, writes.Persist) });
        var trainer = ((TrainingRun)run).Trainer;
        await Until(() => !writes.All.IsEmpty);
        // step 4's forward and backward passes run while step 3's checkpoint is written; its update waits
        await Until(() => trainer.HeldAtUpdate);
        await Task.Delay(400);
        Assert.Equal(3, run.Latest.Step);
        Assert.Equal(3, trainer.Step);
        Assert.True(trainer.HeldAtUpdate);
        Assert.Single(writes.All);
        // a pause applies at once while the write holds the loop, and a resume leaves it held until the write completes
        run.Pause();
        await Until(() => run.State == TrainingRunState.Paused);
        run.Resume();
        await Until(() => run.State == TrainingRunState.Running);
        await Task.Delay(200);
        Assert.Equal(3, trainer.Step);
        writes[0].Written.SetResult();
        await Until(() => writes.All.Count >= 2);
        Assert.Equal(6, writes[1].Snapshot.Step);
        // a failed write does not hold training either
        writes[1].Written.SetException(new IOException("disk full"));
        // pause and cancel still apply while the loop waits
        await Until(() => writes.All.Count >= 3);
        run.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Completion.WaitAsync(TrainingHarness.Limit));
        Assert.Equal(9, writes[2].Snapshot.Step);
    }

    [Fact]
    public async Task ACheckpointReadAfterItsStagingBuffersWereReusedThrowsAndTheNewestReadsLikeASnapshot()
    {
        var g = TrainingGolden.Load("qwen2_bias_adamw_cosine");
        var engine = _h.Engine(g.Model);
        var request = _h.Plain(g, epochs: 6);
        var whole = await TrainingHarness.Finish(engine.SubmitTraining(request));
        var writes = new Writes { Instant = true, Read = false };
        var result = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), Checkpoints = new CheckpointSchedule(2, 0, writes.Persist) }));
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(result));
        Assert.True(writes.All.Count >= 3, $"{writes.All.Count} checkpoints");
        // every checkpoint but the newest had its buffers copied over by a later one: it refuses to be read
        foreach (var (old, _) in writes.All.SkipLast(1))
        {
            var e = Assert.Throws<InvalidOperationException>(() => old.Modules);
            Assert.Contains($"step {old.Step}", e.Message);
        }
        var newest = writes.All.Last().Snapshot;
        var resumed = await TrainingHarness.Finish(engine.SubmitTraining(request with { OutputFolder = _h.Folder(), ResumeFrom = newest }));
        Assert.Equal(TrainingHarness.AdapterBytes(whole), TrainingHarness.AdapterBytes(resumed));
        // and it round-trips through its bytes like a snapshot taken on demand
        Assert.Equal(newest.ToBytes(), TrainingSnapshot.FromBytes(newest.ToBytes()).ToBytes());
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(4, 5)]
    [InlineData(4, -1)]
    public void ABadScheduleIsRefused(int every, int lag)
    {
        var g = TrainingGolden.Load("qwen2_bias_adamw_cosine");
        var engine = _h.Engine(g.Model);
        var e = Assert.Throws<ArgumentException>(() => engine.SubmitTraining(_h.Plain(g) with { Checkpoints = new CheckpointSchedule(every, lag, _ => Task.CompletedTask) }));
        Assert.Contains("checkpoints", e.Message);
    }

    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TrainingHarness.Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(1);
        }
    }
}
