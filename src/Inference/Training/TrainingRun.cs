using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Inference.Formats;

namespace Loom.Inference.Training;

/// <summary>A training run as the engine drives it: <see cref="RunSlice"/> is called from one driver thread (the engine
/// loop) and does a bounded amount of work; control calls (pause, resume, cancel, snapshot) come from any thread and
/// take effect at the next slice.</summary>
internal sealed class TrainingRun : ITrainingRun
{
    private readonly LoraTrainer _trainer;
    private readonly string _fingerprint;
    private readonly string _outputFolder;
    private readonly string? _baseModelName;
    private readonly Action _wake;
    private readonly ConcurrentQueue<TaskCompletionSource<TrainingSnapshot>> _snapshots = new();
    private readonly TaskCompletionSource<TrainingResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Channel<TrainingProgress>> _readers = [];
    private readonly Lock _lock = new();
    private readonly TimeSpan _elapsedBefore;
    private readonly long _tokensBefore;
    private readonly int _stepsBefore;
    private volatile bool _pauseRequested, _cancelRequested;
    private volatile TrainingProgress _latest;
    private int _state;                 // TrainingRunState
    private long _runningTicks;         // Stopwatch ticks while Running (driver thread)
    private long _runningSince;         // 0 when not running
    private readonly CheckpointSchedule? _checkpoints;
    private int _nextCheckpoint;        // the step of the next scheduled checkpoint (driver thread)
    private int _unwrittenStep;         // the step of the newest checkpoint handed over whose write is not known done (driver thread)
    private volatile Task? _unwritten;  // its write; null once done
    private volatile Task? _waitingFor; // the write the loop waits for (back-pressure); null when it is not waiting
    private long _waitSince, _stallTicks; // Stopwatch ticks: start of the current wait; stall since the last checkpoint (driver thread)
    private long _totalStallTicks;        // every checkpoint's copy and wait over the run (driver thread)
    private readonly SnapshotStaging? _staging; // the checkpoints' host buffers, reused (allocated with the run, off the loop)

    public string Id { get; }
    /// <summary>The engine's number for the run (owner id of its pool pages) and the pages it holds (loop thread).</summary>
    internal int Number { get; set; }
    internal int[]? Pages { get; set; }
    public string? TenantId { get; }
    public double TenantShare { get; }
    internal LoraTrainer Trainer => _trainer;

    public TrainingRun(string id, LoraTrainer trainer, string fingerprint, TrainingRequest request, string outputFolder, string? baseModelName, Action wake)
    {
        Id = id;
        _trainer = trainer;
        _fingerprint = fingerprint;
        _outputFolder = outputFolder;
        _baseModelName = baseModelName;
        _wake = wake;
        TenantId = request.TenantId;
        TenantShare = request.TenantShare;
        _elapsedBefore = request.ResumeFrom?.Elapsed ?? TimeSpan.Zero;
        _tokensBefore = trainer.TrainedTokens;
        _stepsBefore = trainer.Step;
        _latest = Progress(TrainingRunState.Queued);
        _checkpoints = request.Checkpoints;
        if (_checkpoints is not null)
        {
            _nextCheckpoint = (_stepsBefore / _checkpoints.EverySteps + 1) * _checkpoints.EverySteps;
            _staging = new SnapshotStaging(trainer.Parameters);
        }
    }

    public TrainingRunState State => (TrainingRunState)Volatile.Read(ref _state);
    public TrainingProgress Latest => _latest;
    public Task<TrainingResult> Completion => _completion.Task;
    public bool IsDone => State is TrainingRunState.Completed or TrainingRunState.Cancelled or TrainingRunState.Failed;

    /// <summary>Whether the driver should give this run a slice now.</summary>
    public bool WantsWork => !IsDone && (_cancelRequested
        || _pauseRequested && _snapshots.IsEmpty && State != TrainingRunState.Paused // a pause applies even while a write holds the loop
        || !_pauseRequested && State == TrainingRunState.Paused                     // and so does a resume
        || _waitingFor is not { IsCompleted: false } && (!_pauseRequested || !_snapshots.IsEmpty || State != TrainingRunState.Paused));

    public void Pause() { _pauseRequested = true; _wake(); }

    public void Resume() { _pauseRequested = false; _wake(); }

    public void Cancel() { _cancelRequested = true; _wake(); }

    public Task<TrainingSnapshot> TakeSnapshotAsync(CancellationToken cancellationToken = default)
    {
        var tcs = new TaskCompletionSource<TrainingSnapshot>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (IsDone) tcs.SetException(new InvalidOperationException($"the run has ended ({State})"));
        else
        {
            _snapshots.Enqueue(tcs);
            _wake();
        }
        return cancellationToken.CanBeCanceled ? tcs.Task.WaitAsync(cancellationToken) : tcs.Task;
    }

    public async IAsyncEnumerable<TrainingProgress> ReadProgressAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var ch = Channel.CreateBounded<TrainingProgress>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_lock)
        {
            ch.Writer.TryWrite(_latest);
            if (IsDone) ch.Writer.TryComplete();
            else _readers.Add(ch);
        }
        try
        {
            await foreach (var p in ch.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false)) yield return p;
        }
        finally
        {
            lock (_lock) _readers.Remove(ch);
        }
    }

    /// <summary>Does up to <paramref name="budget"/> layer-tokens of work (at least one unit when it runs at all) and
    /// takes what it did off <paramref name="budget"/>. Returns the trained tokens of the optimizer steps completed in
    /// this slice.</summary>
    public long RunSlice(ref double budget)
    {
        if (IsDone) return 0;
        if (_cancelRequested)
        {
            End(TrainingRunState.Cancelled, new OperationCanceledException($"training run {Id} was cancelled"));
            return 0;
        }
        if (_pauseRequested && _snapshots.IsEmpty)
        {
            if (State != TrainingRunState.Paused)
            {
                StopClock();
                // progress first: whoever sees the state Paused also sees the step it paused at
                Publish(Progress(TrainingRunState.Paused));
                SetState(TrainingRunState.Paused);
            }
            return 0;
        }
        if (State != TrainingRunState.Running)
        {
            Publish(Progress(TrainingRunState.Running));
            SetState(TrainingRunState.Running);
        }
        StartClock();
        if (WaitsForCheckpoint()) return 0;
        try
        {
            ServeSnapshots();
            if (TakeCheckpoint() && WaitsForCheckpoint()) return 0;
            if (_pauseRequested && _snapshots.IsEmpty && _trainer.AtStepBoundary) return 0; // a pause that waited for a snapshot
            long before = _trainer.TrainedTokens;
            if (!_trainer.Finished && _trainer.Run(ref budget))
            {
                Publish(Progress(TrainingRunState.Running));
                ServeSnapshots();
            }
            if (_trainer.HeldAtUpdate) WaitsForCheckpoint(); // registers the wait: no slices until the write completes
            if (_trainer.Finished) Finish();
            return _trainer.TrainedTokens - before;
        }
        catch (Exception e)
        {
            End(TrainingRunState.Failed, e);
            return 0;
        }
    }

    /// <summary>A chunk of the run's forward pass to ride along with the engine's next inference pass, or null: the run
    /// is not running (paused, cancelled, waiting for a checkpoint's write), is at a step boundary where a snapshot or a
    /// checkpoint is due (a slice takes those), or is not in a chunked forward pass.</summary>
    public ChunkRide? BoardRide()
    {
        if (IsDone || _cancelRequested || _pauseRequested || State != TrainingRunState.Running || _unwritten is not null || _trainer.Finished) return null;
        if (_trainer.AtStepBoundary && (!_snapshots.IsEmpty || (_checkpoints is not null && _trainer.Step == _nextCheckpoint))) return null;
        try
        {
            return _trainer.Board();
        }
        catch (Exception e)
        {
            End(TrainingRunState.Failed, e);
            return null;
        }
    }

    /// <summary>The run's next work is a chunk that can ride along with an inference pass: while requests run, slices
    /// leave it to the decode steps and keep their time for the loss head and the backward pass.</summary>
    public bool LeavesForwardToRides => !IsDone && !_cancelRequested && !_pauseRequested && State == TrainingRunState.Running && _unwritten is null
        && _trainer.WantsRide && !(_trainer.AtStepBoundary && (!_snapshots.IsEmpty || (_checkpoints is not null && _trainer.Step == _nextCheckpoint)));

    /// <summary>Completes a chunk after its pass (<see cref="LoraTrainer.Land"/>); a fault ends the run, never the pass.
    /// Returns the work done, in layer-tokens.</summary>
    public double LandRide(ChunkRide ride, bool spoiled)
    {
        try
        {
            return _trainer.Land(ride, spoiled);
        }
        catch (Exception e)
        {
            End(TrainingRunState.Failed, e);
            return 0;
        }
    }

    private void ServeSnapshots()
    {
        if (_snapshots.IsEmpty || !_trainer.AtStepBoundary) return;
        var s = _trainer.Snapshot(_fingerprint, Elapsed);
        while (_snapshots.TryDequeue(out var tcs)) tcs.TrySetResult(s);
    }

    /// <summary>Takes the scheduled checkpoint when the loop is at its step: copies the state into the run's staging
    /// buffers and hands the snapshot to the schedule's persist callback; from then on the trainer completes no more than
    /// <see cref="CheckpointSchedule.LagSteps"/> steps until the write has completed. True when it took one.</summary>
    private bool TakeCheckpoint()
    {
        if (_checkpoints is null || _unwritten is not null || _trainer.Step != _nextCheckpoint || _trainer.Step >= _trainer.TotalSteps || !_trainer.AtStepBoundary) return false;
        long start = Stopwatch.GetTimestamp();
        var s = _trainer.Snapshot(_fingerprint, Elapsed, _staging!);
        long copy = Stopwatch.GetTimestamp() - start;
        s.Stall = Stopwatch.GetElapsedTime(0, _stallTicks + copy);
        _totalStallTicks += copy;
        _stallTicks = 0;
        _nextCheckpoint += _checkpoints.EverySteps;
        Task written;
        try { written = _checkpoints.Persist(s) ?? Task.CompletedTask; }
        catch (Exception e) { written = Task.FromException(e); } // nothing to wait for: training goes on
        _unwritten = written;
        _unwrittenStep = s.Step;
        _trainer.UpdateLimit = s.Step + _checkpoints.LagSteps;
        return true;
    }

    /// <summary>Back-pressure: true while the trainer is held by a checkpoint whose write has not completed: at the
    /// optimizer update that would complete step <c>checkpoint + LagSteps + 1</c> (so a crash loses at most
    /// <c>EverySteps + LagSteps</c> completed steps, while the write overlaps the forward and backward passes before that
    /// update), or at the next checkpoint's step (one set of staging buffers, one write at a time). The write's completion
    /// wakes the engine. Counts the wait as stall.</summary>
    private bool WaitsForCheckpoint()
    {
        if (_unwritten is not { } write) return false;
        if (write.IsCompleted)
        {
            if (_waitingFor is not null)
            {
                long waited = Stopwatch.GetTimestamp() - _waitSince;
                _stallTicks += waited;
                _totalStallTicks += waited;
                _waitingFor = null;
            }
            _unwritten = null;
            _trainer.UpdateLimit = int.MaxValue;
            return false;
        }
        bool held = _trainer.HeldAtUpdate || (_trainer.AtStepBoundary && _trainer.Step == _nextCheckpoint && _trainer.Step < _trainer.TotalSteps);
        if (!held) return false;
        if (_waitingFor is null)
        {
            _waitSince = Stopwatch.GetTimestamp();
            _waitingFor = write;
            write.ContinueWith(static (_, wake) => ((Action)wake!)(), _wake, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        return true;
    }

    private void Finish()
    {
        ServeSnapshots();
        var weights = _trainer.Parameters.ExportWeights();
        var config = new PeftAdapterConfig
        {
            Rank = _trainer.Parameters.Rank, Alpha = _trainer.Parameters.Alpha, Targets = _trainer.Parameters.Targets, BaseModelNameOrPath = _baseModelName,
        };
        PeftAdapterWriter.Write(_outputFolder, config, weights);
        var p = Progress(TrainingRunState.Completed);
        SetState(TrainingRunState.Completed);
        Publish(p, complete: true);
        _completion.TrySetResult(new TrainingResult(_outputFolder, _trainer.Step, _trainer.TrainedTokens, _trainer.LastLoss, _trainer.LastValidationLoss, p.Elapsed)
        {
            CheckpointStall = Stopwatch.GetElapsedTime(0, _totalStallTicks),
        });
    }

    /// <summary>Ends the run (cancelled, failed, or the engine stopping): pending snapshots and the completion fault.</summary>
    public void End(TrainingRunState state, Exception error)
    {
        if (IsDone) return;
        StopClock();
        SetState(state);
        Publish(Progress(state), complete: true);
        while (_snapshots.TryDequeue(out var tcs)) tcs.TrySetException(new InvalidOperationException($"the run has ended ({state})", error));
        if (error is OperationCanceledException oce) _completion.TrySetCanceled(oce.CancellationToken);
        else _completion.TrySetException(error);
    }

    private void SetState(TrainingRunState s) => Volatile.Write(ref _state, (int)s);

    private void StartClock() { if (_runningSince == 0) _runningSince = Stopwatch.GetTimestamp(); }

    private void StopClock()
    {
        if (_runningSince == 0) return;
        Interlocked.Add(ref _runningTicks, Stopwatch.GetTimestamp() - _runningSince);
        _runningSince = 0;
    }

    /// <summary>Wall time while the run was running (its slices and the inference work between them; pauses excluded).</summary>
    private TimeSpan Elapsed => _elapsedBefore + Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _runningTicks))
        + (_runningSince == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(_runningSince));

    private TrainingProgress Progress(TrainingRunState state)
    {
        var t = _trainer;
        var elapsed = Elapsed;
        long tokens = t.TrainedTokens - _tokensBefore;
        double seconds = (elapsed - _elapsedBefore).TotalSeconds;
        double tps = seconds > 0 ? tokens / seconds : 0;
        int stepsDone = t.Step, total = t.TotalSteps;
        TimeSpan? eta = null;
        if (stepsDone > _stepsBefore && seconds > 0)
        {
            double perStep = seconds / (stepsDone - _stepsBefore);
            eta = TimeSpan.FromSeconds(perStep * (total - stepsDone));
        }
        double epoch = total == 0 ? 0 : EpochOf(stepsDone);
        return new TrainingProgress(state, stepsDone, total, epoch, t.LastLoss, t.LastValidationLoss, t.LastLearningRate, tps, t.TrainedTokens, elapsed, eta);
    }


    /// <summary>Fractional epochs done after <paramref name="steps"/> steps.</summary>
    private double EpochOf(int steps)
    {
        var plan = _trainer.Plan.Steps;
        if (steps >= plan.Count) return _trainer.Plan.Steps.Count == 0 ? 0 : plan[^1].Epoch + 1;
        var s = plan[steps];
        int rows = _trainer.Plan.RowsInEpoch(s.Epoch);
        return s.Epoch + (double)s.FirstRow / Math.Max(1, rows);
    }

    private void Publish(TrainingProgress p, bool complete = false)
    {
        _latest = p;
        lock (_lock)
        {
            foreach (var ch in _readers)
            {
                ch.Writer.TryWrite(p);
                if (complete) ch.Writer.TryComplete();
            }
        }
    }
}
