namespace Loom.Inference.Training;

/// <summary>A submitted training run. Thread-safe. Pause, resume and cancel take effect between training slices
/// (never in the middle of one); a snapshot is taken between optimizer steps.</summary>
public interface ITrainingRun
{
    string Id { get; }
    TrainingRunState State { get; }
    /// <summary>The latest progress event.</summary>
    TrainingProgress Latest { get; }

    /// <summary>Every progress event from now on (the latest one first), until the run ends. Several readers may read at
    /// once; a slow reader does not hold the run back (it sees the newest events; intermediate ones may be skipped when
    /// it falls more than 1024 behind).</summary>
    IAsyncEnumerable<TrainingProgress> ReadProgressAsync(CancellationToken cancellationToken = default);

    /// <summary>Stops computing after the current slice; the run keeps its state until <see cref="Resume"/> or <see cref="Cancel"/>.</summary>
    void Pause();
    void Resume();
    /// <summary>Ends the run after the current slice; <see cref="Completion"/> then throws <see cref="OperationCanceledException"/>.</summary>
    void Cancel();

    /// <summary>A consistent copy of the run's state between two optimizer steps (LoRA weights, AdamW moments, step,
    /// data-order RNG, data cursor), taken by the training loop at the next step boundary: a run paused in the middle of
    /// a step finishes that step first (then stays paused). Give it to <see cref="TrainingRequest.ResumeFrom"/> to continue
    /// bitwise-identically. Faults when the run has ended.</summary>
    Task<TrainingSnapshot> TakeSnapshotAsync(CancellationToken cancellationToken = default);

    /// <summary>The result once the final adapter is written; faults with the error of a failed run, or
    /// <see cref="OperationCanceledException"/> for a cancelled one.</summary>
    Task<TrainingResult> Completion { get; }
}

/// <summary>The engine's training surface: LoRA fine-tuning on the served base model, co-served with inference.</summary>
public interface ITrainingEngine
{
    /// <summary>Validates the request (throws <see cref="ArgumentException"/> naming the problem, nothing started) and
    /// starts the run. The final adapter can be registered with <c>IInferenceEngine.RegisterAdapter</c> at once.</summary>
    ITrainingRun SubmitTraining(TrainingRequest request);
}
