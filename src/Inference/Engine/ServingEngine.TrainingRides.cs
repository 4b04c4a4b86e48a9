using System.Diagnostics;
using Loom.Inference.Kernels;
using Loom.Inference.Scheduling;
using Loom.Inference.Training;

namespace Loom.Inference.Engine;

/// <summary>Training rows inside decode steps (decision 005): with <see cref="InferenceOptions.TrainingRideRows"/> set, a
/// chunk of a training run's forward pass rides along with a decode step: its base-weight products are computed in the
/// step's own regions over the same weight rows, its other work (norms, LoRA, attention over its row) between them on
/// the loop thread. The step's requests get bitwise the logits they get without it, and the run bitwise the activations
/// of its forward pass on its own. The loss head and the backward pass still run in the slices beside the steps.</summary>
public sealed partial class ServingEngine
{
    private ChunkRide? _ride;           // the chunk boarded for the step under way (loop thread)
    private TrainingRun? _rideRun;
    private bool _rideSpoiled;          // the step failed part-way: the chunk runs again from its first layer
    private long _decodeSteps;          // decode steps since the engine started (one in TrainingRideEvery carries a chunk)
    private long _rides, _riddenRows, _rideTicks;
    private int _ridelessSteps;         // steps in a row that carried no chunk

    /// <summary>Steps of more tokens (long prefill chunks: compute-bound already) carry no chunk.</summary>
    private const int RideMaxStepTokens = 64;

    /// <summary>Before a step: boards a chunk of a run's forward pass when the step is small (decode steps, short prefill
    /// chunks: the weights stream past for few rows, which is what the chunk's products share), a run is in its
    /// forward pass, and its tenant is not ahead of a tenant whose requests wait (VTC).</summary>
    private void BoardTraining(SchedulerOutput plan)
    {
        if (_options.TrainingRideRows == 0 || _training.Count == 0 || _model.Backend is not null || _deviceSampling is not null
            || _model.Kernels is not CpuKernels) return;
        _ridelessSteps++;
        if (plan.Tokens > RideMaxStepTokens) return;
        if (_decodeSteps++ % _options.TrainingRideEvery != 0) return;
        for (int i = 0; i < _training.Count; i++)
        {
            var run = _training[(_trainingNext + i) % _training.Count];
            if (!run.WantsWork) continue;
            if (_policy is VtcPolicy vtc && vtc.LowestWaitingCounter() is { } low && vtc.Counter(run.TenantId) > low) continue;
            if (run.BoardRide() is not { } ride) continue;
            _ride = ride;
            _rideRun = run;
            _rideSpoiled = false;
            _ridelessSteps = 0;
            return;
        }
    }

    /// <summary>While requests run, a slice leaves a run's chunked forward pass to the decode steps, unless several steps
    /// in a row carried no chunk (long prefill steps, or one step in TrainingRideEvery): then the slice takes it.</summary>
    private bool LeaveToRides(TrainingRun run) =>
        _options.TrainingRideRows > 0 && _ridelessSteps < 2 * _options.TrainingRideEvery + 2 && run.LeavesForwardToRides;

    /// <summary>The step's forward pass with the boarded chunk riding along. A fault of the chunk never reaches the
    /// step's requests: it stops the ride, and the chunk runs again on its own after the step.</summary>
    private void ForwardRiding(ChunkRide ride)
    {
        var scope = ((CpuKernels)_model.Kernels).Ride(ride);
        bool completed = false;
        try
        {
            _model.Forward(_state);
            completed = true;
        }
        finally
        {
            try { scope.Complete(); }
            catch (InvalidOperationException) { _rideSpoiled = true; }
            if (!completed) _rideSpoiled = true;
        }
    }

    /// <summary>After the step: completes the boarded chunk (whatever the step did not carry).</summary>
    private void LandTraining()
    {
        if (_ride is not { } ride) return;
        var run = _rideRun!;
        _ride = null;
        _rideRun = null;
        long start = Stopwatch.GetTimestamp();
        double work = run.LandRide(ride, _rideSpoiled);
        Interlocked.Add(ref _rideTicks, Stopwatch.GetTimestamp() - start);
        _trainingWork += work;
        Interlocked.Increment(ref _rides);
        Interlocked.Add(ref _riddenRows, ride.Rows);
    }

    /// <summary>Chunks that rode along with decode steps, their rows, and the time spent completing them after their steps.</summary>
    internal (long Rides, long Rows, TimeSpan Landing) RideCounters =>
        (Interlocked.Read(ref _rides), Interlocked.Read(ref _riddenRows), Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _rideTicks)));
}
