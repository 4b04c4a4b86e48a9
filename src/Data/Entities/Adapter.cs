namespace Loom.Data.Entities;

/// <summary>A tenant's LoRA adapter (PEFT format) over one base model.</summary>
public class Adapter : ITenantOwned
{
    public Guid Id { get; set; }
    public Guid TenantId { get; set; }
    /// <summary>The model id a tenant uses in requests; unique within the tenant.</summary>
    public required string Name { get; set; }
    public Guid BaseModelId { get; set; }
    public BaseModel? BaseModel { get; set; }
    public int Rank { get; set; }
    public double Alpha { get; set; }
    /// <summary>Comma-separated PEFT target modules, e.g. <c>q_proj,v_proj</c>.</summary>
    public required string TargetModules { get; set; }
    /// <summary>SHA-256 (hex) of the adapter blob in the blob store.</summary>
    public required string BlobSha256 { get; set; }
    public long SizeBytes { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
