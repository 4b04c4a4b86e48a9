namespace Loom.Data.Entities;

/// <summary>A tenant's fine-tuning job (OpenAI's fine_tuning.job): what to train, how far it got and how it ended.
/// The lease (<see cref="LeaseOwner"/>, <see cref="LeaseExpiresAt"/>) lets one run of the job train at a time: a
/// second run of the same background job (a retry, or a node that took it over) waits until the lease expires.</summary>
public class FineTuneJob : ITenantOwned
{
    public Guid Id { get; set; }
    public Guid TenantId { get; set; }
    /// <summary>The base model (or the tenant's adapter to continue from) as the request named it.</summary>
    public required string Model { get; set; }
    public Guid BaseModelId { get; set; }
    public BaseModel? BaseModel { get; set; }
    /// <summary>The tenant's adapter training continues from, or null (PEFT's initialisation).</summary>
    public Guid? InitialAdapterId { get; set; }
    public Guid TrainingFileId { get; set; }
    public Guid? ValidationFileId { get; set; }
    public string? Suffix { get; set; }
    public long Seed { get; set; }
    public int Epochs { get; set; }
    public int BatchSize { get; set; }
    public double LearningRateMultiplier { get; set; }
    public int Rank { get; set; }
    public double Alpha { get; set; }
    /// <summary>Comma-separated PEFT target modules, e.g. <c>q_proj,v_proj</c>.</summary>
    public required string TargetModules { get; set; }
    /// <summary>validating_files, queued, running, paused, succeeded, failed or cancelled (<see cref="FineTuneStatus"/>).</summary>
    public required string Status { get; set; }
    /// <summary>A pause or cancel asked for through the API, carried out by the run within one training slice.</summary>
    public string? RequestedAction { get; set; }
    public long TrainedTokens { get; set; }
    public int Step { get; set; }
    public int TotalSteps { get; set; }
    public DateTimeOffset? EstimatedFinish { get; set; }
    /// <summary>The adapter's model name once the job succeeded (<c>ft:base:tenant:suffix:id</c>).</summary>
    public string? FineTunedModel { get; set; }
    public Guid? ResultAdapterId { get; set; }
    /// <summary>The metrics CSV the run wrote when it ended (a file of the tenant, purpose <c>fine-tune-results</c>), or null.</summary>
    public Guid? ResultFileId { get; set; }
    public string? ErrorCode { get; set; }
    public string? ErrorMessage { get; set; }
    public string? ErrorParam { get; set; }
    public string? LeaseOwner { get; set; }
    public DateTimeOffset? LeaseExpiresAt { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
}

/// <summary>OpenAI's fine-tuning job statuses (plus Loom's paused).</summary>
public static class FineTuneStatus
{
    public const string ValidatingFiles = "validating_files";
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    public static bool IsFinal(string s) => s is Succeeded or Failed or Cancelled;
}
