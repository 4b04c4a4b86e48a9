namespace Loom.Inference.Training;

/// <summary>Where a training run is.</summary>
public enum TrainingRunState { Queued, Running, Paused, Completed, Cancelled, Failed }

/// <summary>One progress event, published after every optimizer step (and on every state change).</summary>
/// <param name="Step">Optimizer steps done (1 after the first).</param>
/// <param name="TotalSteps">Optimizer steps of the whole run.</param>
/// <param name="Epoch">Epochs done, fractional (1.5: halfway through the second).</param>
/// <param name="TrainLoss">Mean cross-entropy over the trained tokens of the last step (NaN before the first).</param>
/// <param name="ValidationLoss">Latest validation loss (mean over trained tokens of the validation set), or null.</param>
/// <param name="LearningRate">The learning rate the last step used.</param>
/// <param name="TokensPerSecond">Trained tokens per second of run time (pauses excluded).</param>
/// <param name="TrainedTokens">Tokens whose loss counted, over all steps so far.</param>
/// <param name="Elapsed">Run time so far (pauses excluded).</param>
/// <param name="EstimatedRemaining">Estimate of the time to finish at the current pace; null before the first step.</param>
public sealed record TrainingProgress(
    TrainingRunState State, int Step, int TotalSteps, double Epoch, double TrainLoss, double? ValidationLoss, double LearningRate,
    double TokensPerSecond, long TrainedTokens, TimeSpan Elapsed, TimeSpan? EstimatedRemaining)
{
    public double Fraction => TotalSteps == 0 ? 0 : (double)Step / TotalSteps;
}

/// <summary>How a run ended successfully.</summary>
/// <param name="AdapterFolder">The final adapter as a PEFT folder, ready for <c>IInferenceEngine.RegisterAdapter</c>.</param>
public sealed record TrainingResult(string AdapterFolder, int Steps, long TrainedTokens, double FinalTrainLoss, double? FinalValidationLoss, TimeSpan Elapsed)
{
    /// <summary>How long the loop stood still for its scheduled checkpoints over the run: the copies into host buffers
    /// and any back-pressure wait for a write.</summary>
    public TimeSpan CheckpointStall { get; init; }
}
