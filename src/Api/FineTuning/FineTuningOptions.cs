namespace Loom.Api.FineTuning;

/// <summary>Bound from "FineTuning"; validated at start.</summary>
public sealed class FineTuningOptions
{
    /// <summary>Jobs of one tenant that may train (or be paused) at once; further jobs wait in the queue.</summary>
    public int MaxRunningJobsPerTenant { get; set; } = 1;

    /// <summary>Jobs of one tenant that may wait (validating files or queued); a create past this gets 429.</summary>
    public int MaxQueuedJobsPerTenant { get; set; } = 4;

    /// <summary>The learning rate that <c>learning_rate_multiplier</c> scales (LoRA's usual 1e-4..2e-4).</summary>
    public double BaseLearningRate { get; set; } = 1e-4;

    /// <summary><c>n_epochs: "auto"</c>.</summary>
    public int AutoEpochs { get; set; } = 3;

    /// <summary>LoRA defaults when the request does not set <c>rank</c> / <c>alpha</c>.</summary>
    public int DefaultRank { get; set; } = 8;
    public double DefaultAlpha { get; set; } = 16;

    /// <summary>A checkpoint every this many optimizer steps (and one at the end).</summary>
    public int CheckpointEverySteps { get; set; } = 50;

    /// <summary>How many optimizer steps training may complete past a checkpoint that is still being written before it
    /// waits for that write (back-pressure). A kill -9 loses at most <see cref="CheckpointEverySteps"/> + this many
    /// completed steps. Null or 0 (the default): at most one interval; the write overlaps the forward and backward passes
    /// of the next step and only that step's optimizer update waits for it, so the loop stands still only for the part
    /// of a write that outlasts a step. Up to <see cref="CheckpointEverySteps"/>: writes may overlap more steps, and a
    /// crash may lose that many more.</summary>
    public int? CheckpointLagSteps { get; set; }

    /// <summary>A metrics event every this many optimizer steps (and the last step).</summary>
    public int MetricsEverySteps { get; set; } = 10;

    /// <summary>Checkpoints kept per job: the last this many, plus the best by validation loss.</summary>
    public int KeepLastCheckpoints { get; set; } = 3;

    /// <summary>Where checkpoints are staged on the node that trains (each also goes to the blob store).</summary>
    public string CheckpointDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "loom-checkpoints");

    /// <summary>How long a run's lease on its job lasts without renewal; a dead node's job is taken over after this.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often the run reads pause / resume / cancel requests (and renews its lease).</summary>
    public TimeSpan ControlPollInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Largest training or validation file a job reads (bytes).</summary>
    public long MaxFileBytes { get; set; } = 512L * 1024 * 1024;

    internal IEnumerable<string> Problems()
    {
        if (MaxRunningJobsPerTenant < 1) yield return "FineTuning:MaxRunningJobsPerTenant must be at least 1.";
        if (MaxQueuedJobsPerTenant < 0) yield return "FineTuning:MaxQueuedJobsPerTenant must not be negative.";
        if (!(BaseLearningRate > 0 && BaseLearningRate <= 1)) yield return "FineTuning:BaseLearningRate must be in (0, 1].";
        if (AutoEpochs is < 1 or > 1000) yield return "FineTuning:AutoEpochs must be between 1 and 1000.";
        if (DefaultRank is < 1 or > 128) yield return "FineTuning:DefaultRank must be between 1 and 128.";
        if (!(DefaultAlpha > 0)) yield return "FineTuning:DefaultAlpha must be positive.";
        if (CheckpointEverySteps < 1) yield return "FineTuning:CheckpointEverySteps must be at least 1.";
        if (CheckpointLagSteps is { } lag && (lag < 0 || lag > CheckpointEverySteps)) yield return "FineTuning:CheckpointLagSteps must be between 0 and CheckpointEverySteps.";
        if (MetricsEverySteps < 1) yield return "FineTuning:MetricsEverySteps must be at least 1.";
        if (KeepLastCheckpoints < 1) yield return "FineTuning:KeepLastCheckpoints must be at least 1.";
        if (string.IsNullOrWhiteSpace(CheckpointDirectory)) yield return "FineTuning:CheckpointDirectory is required.";
        if (LeaseDuration < TimeSpan.FromSeconds(2)) yield return "FineTuning:LeaseDuration must be at least 2 seconds.";
        if (ControlPollInterval <= TimeSpan.Zero || ControlPollInterval * 4 > LeaseDuration) yield return "FineTuning:ControlPollInterval must be positive and at most a quarter of LeaseDuration.";
        if (MaxFileBytes < 1) yield return "FineTuning:MaxFileBytes must be positive.";
    }
}
