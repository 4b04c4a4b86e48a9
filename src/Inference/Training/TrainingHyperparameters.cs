using Loom.Inference.Formats;

namespace Loom.Inference.Training;

/// <summary>How the learning rate moves after warmup: linear decay to zero, cosine decay to zero, or constant.</summary>
public enum LearningRateSchedule { Linear, Cosine, Constant }

/// <summary>Everything that decides a training run's result besides the data and the base model. The same
/// hyperparameters (seed included), data and base model give bitwise the same adapter.</summary>
public sealed record TrainingHyperparameters
{
    /// <summary>Passes over the training examples.</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Sequences per micro-batch (one forward/backward). With <see cref="Packing"/>, packed rows of
    /// <see cref="MaxSequenceLength"/> tokens.</summary>
    public int MicroBatchSize { get; init; } = 1;
    /// <summary>Micro-batches whose gradients add up to one optimizer step. The loss of a step is the mean over
    /// every trained token of all its micro-batches.</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Peak learning rate (after warmup).</summary>
    public double LearningRate { get; init; } = 1e-4;
    /// <summary>Optimizer steps of linear warmup from 0 to <see cref="LearningRate"/>: lr(s) = LearningRate · (s+1) / WarmupSteps
    /// for step s &lt; WarmupSteps (s counts from 0).</summary>
    public int WarmupSteps { get; init; }
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Linear;
    /// <summary>AdamW decoupled weight decay (lr · wd · θ subtracted each step).</summary>
    public double WeightDecay { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Clip the global L2 norm of all LoRA gradients of a step to this; 0: no clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>LoRA rank r (1..128).</summary>
    public int Rank { get; init; } = 8;
    /// <summary>lora_alpha: the update is scaled by alpha / r.</summary>
    public double Alpha { get; init; } = 16;
    /// <summary>Modules that get a LoRA pair in every layer.</summary>
    public IReadOnlyList<LoraTarget> TargetModules { get; init; } = [LoraTarget.QProj, LoraTarget.VProj];
    /// <summary>Seeds the LoRA A initialisation and the order of examples in each epoch.</summary>
    public ulong Seed { get; init; }
    /// <summary>Shuffle the examples each epoch (seeded); false: file order.</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>Validation loss every this many optimizer steps (and at the end) when a validation set is given; 0: only at the end.</summary>
    public int ValidationEvery { get; init; }
    /// <summary>Pack several examples into rows of <see cref="MaxSequenceLength"/> tokens (attention never crosses
    /// examples); false: one example per row, no padding computed.</summary>
    public bool Packing { get; init; }
    /// <summary>Longest training row; 0: the engine's context.</summary>
    public int MaxSequenceLength { get; init; }

    public const int MaxRank = 128;

    /// <summary>The first problem with these values, or null.</summary>
    public string? Problem()
    {
        if (Epochs < 1 || Epochs > 1000) return "epochs must be between 1 and 1000";
        if (MicroBatchSize < 1 || MicroBatchSize > 1024) return "micro-batch size must be between 1 and 1024";
        if (GradientAccumulation < 1 || GradientAccumulation > 1024) return "gradient accumulation must be between 1 and 1024";
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate) || LearningRate > 1) return "learning rate must be in (0, 1]";
        if (WarmupSteps < 0) return "warmup steps must not be negative";
        if (!Enum.IsDefined(Schedule)) return "schedule must be linear, cosine or constant";
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) return "weight decay must be finite and not negative";
        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1)) return "betas must be in [0, 1)";
        if (!(Epsilon > 0) || !double.IsFinite(Epsilon)) return "epsilon must be positive";
        if (!(MaxGradNorm >= 0) || !double.IsFinite(MaxGradNorm)) return "max grad norm must be finite and not negative";
        if (Rank < 1 || Rank > MaxRank) return $"rank must be between 1 and {MaxRank}";
        if (!(Alpha > 0) || !double.IsFinite(Alpha)) return "alpha must be positive";
        if (TargetModules is null || TargetModules.Count == 0) return "at least one target module is required";
        if (TargetModules.Distinct().Count() != TargetModules.Count) return "target modules must not repeat";
        if (ValidationEvery < 0) return "validation interval must not be negative";
        if (MaxSequenceLength < 0) return "max sequence length must not be negative";
        return null;
    }

    /// <summary>alpha / r.</summary>
    public float Scale => (float)(Alpha / Rank);
}
