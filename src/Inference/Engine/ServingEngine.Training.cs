using System.Collections.Concurrent;
using System.Diagnostics;
using Loom.Inference.Scheduling;
using Loom.Inference.Training;

namespace Loom.Inference.Engine;

/// <summary>Fine-tuning co-served in the engine loop (FlexLLM): each iteration serves inference first, then may give
/// training a slice: while requests run, training earns <see cref="InferenceOptions.TrainingShareWhileServing"/> of the
/// time spent serving them and spends it in bursts of about <see cref="InferenceOptions.TrainingBurstMs"/> (one
/// inter-token interval in many carries the training time instead of every one carrying a part of it); with
/// nothing to serve it takes every iteration, one unit at a time, so an arriving request waits one unit at most. A
/// slice is whole units (a layer's forward or backward of one row), so the training result does not depend on what ran
/// beside it.</summary>
public sealed partial class ServingEngine : ITrainingEngine
{
    private readonly ConcurrentQueue<TrainingRun> _trainingArrivals = new();
    private readonly List<TrainingRun> _training = [];   // loop thread
    private int _trainingNext;                          // round-robin cursor over _training
    private double _trainingCredit;                     // Stopwatch ticks of loop time training may still take while serving
    private double _trainingWork;                       // layer-tokens of training units done (the trainer's cost measure)
    private bool _trainingBurst;                        // a burst of training units is under way (its credit not yet spent)
    private double _ticksPerLayerToken;                 // Stopwatch ticks per layer-token of the last slices (0: none ran yet)
    private int _nextTrainingRun;
    private long _trainedTokens, _trainingSlices, _trainingTicks, _longestSlice, _servingSlices;

    /// <inheritdoc/>
    public ITrainingRun SubmitTraining(TrainingRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_stopping, this);
        int number = Interlocked.Increment(ref _nextTrainingRun);
        var run = TrainingRunFactory.Create($"train-{number}", _model, request, Model.Name, _options.TrainingActivationBytes, () =>
        {
            try { _wake.Set(); }
            catch (ObjectDisposedException) { }
        });
        run.Number = number;
        _trainingArrivals.Enqueue(run);
        _wake.Set();
        if (_stopping && !_thread.IsAlive) run.End(TrainingRunState.Failed, new ObjectDisposedException(nameof(ServingEngine)));
        return run;
    }

    /// <summary>Runs one training slice if a run wants one and the loop may give it time. <paramref name="servedTicks"/>:
    /// time the iteration spent on inference (0: none ran). Returns whether training ran.</summary>
    private bool TrainingSlice(int leftoverTokens, long servedTicks)
    {
        while (_trainingArrivals.TryDequeue(out var arrived))
        {
            _training.Add(arrived);
            ReserveActivations(arrived);
            arrived.Trainer.RideRows = _options.TrainingRideRows;
        }
        if (_training.Count == 0) return false;
        TrainingRun? run = null;
        for (int i = 0; i < _training.Count && run is null; i++)
        {
            var r = _training[(_trainingNext + i) % _training.Count];
            if (r.WantsWork) run = r;
        }
        if (run is null) return false;
        _trainingNext++;
        bool serving = servedTicks > 0;
        double budget;
        if (serving)
        {
            // credit accrues at the share of the time spent serving; training spends it in bursts of about
            // TrainingBurstMs, so that one inter-token interval of the running requests in many takes the training time
            // rather than every one taking a part of it
            double burst = _options.TrainingBurstMs * (Stopwatch.Frequency / 1000.0);
            _trainingCredit = Math.Min(_trainingCredit + _options.TrainingShareWhileServing * servedTicks, Math.Max(burst, servedTicks));
            if (_trainingCredit <= 0 || leftoverTokens <= 0 || (!_trainingBurst && _trainingCredit < burst)) return false;
            // the forward pass rides along with the decode steps (TrainingRideRows): the credit waits for the backward pass
            if (LeaveToRides(run)) return false;
            // a tenant fine-tuning does not take time from less-served tenants whose requests wait
            if (_policy is VtcPolicy vtc && vtc.LowestWaitingCounter() is { } low && vtc.Counter(run.TenantId) > low) return false;
            // units while the credit lasts, at the pace the last slices ran (at least one unit; never more than the
            // iteration's leftover token budget)
            budget = Math.Min(_ticksPerLayerToken > 0 ? _trainingCredit / _ticksPerLayerToken : 0, (double)leftoverTokens * _model.Config.NumLayers);
        }
        else
        {
            budget = (double)_options.TrainingSliceTokens * _model.Config.NumLayers;
        }
        double planned = budget;
        long start = Stopwatch.GetTimestamp();
        long tokens = run.RunSlice(ref budget);
        long spent = Stopwatch.GetTimestamp() - start;
        _trainingWork += planned - budget;
        if (planned - budget > 0)
        {
            double pace = spent / (planned - budget);
            _ticksPerLayerToken = _ticksPerLayerToken > 0 ? 0.5 * _ticksPerLayerToken + 0.5 * pace : pace;
        }
        if (serving)
        {
            _trainingCredit -= spent;
            _trainingBurst = _trainingCredit > 0; // a burst cut short by an optimizer step goes on after the next decode step
        }
        Interlocked.Add(ref _trainingTicks, spent);
        if (spent > Volatile.Read(ref _longestSlice)) Volatile.Write(ref _longestSlice, spent);
        Interlocked.Increment(ref _trainingSlices);
        if (serving) Interlocked.Increment(ref _servingSlices);
        if (tokens > 0)
        {
            Interlocked.Add(ref _trainedTokens, tokens);
            if (_policy is VtcPolicy v)
            {
                v.SetShare(run.TenantId, run.TenantShare);
                v.ChargeTraining(run.TenantId, tokens * _options.VtcTrainingWeight);
            }
        }
        for (int i = _training.Count - 1; i >= 0; i--)
        {
            if (!_training[i].IsDone) continue;
            ReleaseActivations(_training[i]);
            _training.RemoveAt(i);
        }
        return true;
    }

    /// <summary>Counts a new run's activations in the unified pool: it keeps as many layers' activations as fit in at most
    /// half of the free pages (idle cached prefix blocks count as free: they are evicted for it; and in
    /// Inference:TrainingActivationBytes), holding those pages while it runs; the other layers are recomputed in the
    /// backward pass (bitwise the same result).</summary>
    private void ReserveActivations(TrainingRun run)
    {
        var m = run.Trainer.Model;
        int layers = m.AllocatedLayers, available = _pool.FreePages + EvictablePages;
        long pageBytes = _pool.PageBytes, room = available / 2 * pageBytes;
        while (layers > 1 && m.BytesFor(layers) > room) layers--;
        int pages = (int)Math.Min(available / 2, (m.BytesFor(layers) + pageBytes - 1) / pageBytes);
        if (pages > _pool.FreePages) _blocks?.Evict(pages - _pool.FreePages);
        var ids = new int[pages];
        if (pages > 0 && _pool.TryAllocate(Memory.PageOwner.Training(run.Number), ids)) run.Pages = ids;
        m.LimitStoredLayers(layers);
    }

    private void ReleaseActivations(TrainingRun run)
    {
        if (run.Pages is not { } ids) return;
        run.Pages = null;
        _pool.Free(Memory.PageOwner.Training(run.Number), ids);
    }

    /// <summary>Inference is short of memory: every run gives its pages back and recomputes all but its last layer from
    /// its next row on. Training never holds memory a request waits for.</summary>
    private void ReclaimTrainingMemory()
    {
        foreach (var r in _training)
        {
            if (r.Pages is null) continue;
            TrainingReclaims++;
            ReleaseActivations(r);
            r.Trainer.Model.LimitStoredLayers(1);
        }
    }

    /// <summary>Ends every training run (the engine is stopping or its loop failed).</summary>
    private void EndTraining(Exception error)
    {
        while (_trainingArrivals.TryDequeue(out var arrived)) _training.Add(arrived);
        foreach (var r in _training)
        {
            r.End(TrainingRunState.Failed, error);
            ReleaseActivations(r);
        }
        _training.Clear();
    }

    /// <summary>Times a run gave its pages back to requests short of memory (tests).</summary>
    internal int TrainingReclaims { get; private set; }

    /// <summary>Pages of the pool counted against training runs' activations.</summary>
    internal int TrainingPages => _pool.Usage.TrainingPages;

    /// <summary>Training work done, in layer-tokens (one token through one layer's forward; a backward counts two or
    /// three, the loss head its share): progress finer than optimizer steps, the same for the same work however it was
    /// sliced (loop thread; read it while no run trains, or accept a torn read).</summary>
    internal double TrainingWork => Volatile.Read(ref _trainingWork);

    /// <summary>Training slices run in iterations that also served requests.</summary>
    internal long ServingSlices => Interlocked.Read(ref _servingSlices);

    /// <summary>Loop time in inference steps, waiting with nothing to do, and in training slices (the longest one too).</summary>
    internal (TimeSpan Steps, TimeSpan Idle, TimeSpan Training, TimeSpan LongestSlice) LoopTimes =>
        (Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _c.StepTicks)), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _c.IdleTicks)),
         Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _trainingTicks)), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _longestSlice)));

    /// <summary>Training runs not yet ended, trained tokens, slices and time spent in them.</summary>
    internal (int Runs, long TrainedTokens, long Slices, TimeSpan Time) TrainingCounters =>
        (_training.Count + _trainingArrivals.Count, Interlocked.Read(ref _trainedTokens), Interlocked.Read(ref _trainingSlices),
         Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _trainingTicks)));
}
