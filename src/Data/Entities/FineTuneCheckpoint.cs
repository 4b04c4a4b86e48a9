namespace Loom.Data.Entities;

/// <summary>A complete, verified checkpoint of a fine-tuning job (adapter, optimizer state, data cursor and a manifest
/// of SHA-256 hashes), stored as one blob.</summary>
public class FineTuneCheckpoint : ITenantOwned
{
    public Guid Id { get; set; }
    public Guid TenantId { get; set; }
    public Guid JobId { get; set; }
    /// <summary>Optimizer steps done when the snapshot was taken.</summary>
    public int Step { get; set; }
    public double TrainLoss { get; set; }
    public double? ValidationLoss { get; set; }
    public long TrainedTokens { get; set; }
    /// <summary>SHA-256 (hex) of the checkpoint blob in the blob store.</summary>
    public required string BlobSha256 { get; set; }
    public long SizeBytes { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
