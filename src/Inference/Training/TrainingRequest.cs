namespace Loom.Inference.Training;

/// <summary>A LoRA fine-tuning run on the engine's base model (its weights are shared, never copied or changed).</summary>
public sealed record TrainingRequest
{
    /// <summary>Training examples (token ids with per-token loss masks); at least one; each within the context.</summary>
    public required IReadOnlyList<TrainingExample> Examples { get; init; }
    /// <summary>Held-out examples: validation loss every <see cref="TrainingHyperparameters.ValidationEvery"/> steps and at
    /// the end. Null: none.</summary>
    public IReadOnlyList<TrainingExample>? Validation { get; init; }
    public TrainingHyperparameters Hyperparameters { get; init; } = new();
    /// <summary>A PEFT adapter folder to continue training from (its rank, alpha and target modules replace those of the
    /// hyperparameters; the optimizer starts fresh). Null: PEFT's initialisation (A random from the seed, B zero).</summary>
    public string? InitialAdapterFolder { get; init; }
    /// <summary>A snapshot of an earlier run with the same data and hyperparameters: the run continues from it and ends
    /// bitwise equal to the uninterrupted run.</summary>
    public TrainingSnapshot? ResumeFrom { get; init; }
    /// <summary>Where the final adapter is written as a PEFT folder (adapter_config.json + adapter_model.safetensors).
    /// Null: a new folder under the system's temporary directory.</summary>
    public string? OutputFolder { get; init; }
    /// <summary>Recorded as base_model_name_or_path in the adapter's config; null: the engine's model name.</summary>
    public string? BaseModelName { get; init; }
    /// <summary>Who trains: trained tokens count in this tenant's fair-share counter.</summary>
    public string? TenantId { get; init; }
    /// <summary>The tenant's weight in the fair division of service (as <c>GenerationRequest.TenantShare</c>).</summary>
    public double TenantShare { get; init; } = 1;
    /// <summary>Checkpoints the loop takes every N steps, with back-pressure on their writes. Null: snapshots only when
    /// asked (<see cref="ITrainingRun.TakeSnapshotAsync"/>).</summary>
    public CheckpointSchedule? Checkpoints { get; init; }
}
