namespace Loom.Data.Entities;

/// <summary>A file a tenant uploaded (training data for fine-tunes).</summary>
public class FileObject : ITenantOwned
{
    public Guid Id { get; set; }
    public Guid TenantId { get; set; }
    public required string FileName { get; set; }
    public required string Purpose { get; set; }
    public long Bytes { get; set; }
    /// <summary>SHA-256 (hex) of the content in the blob store.</summary>
    public required string BlobSha256 { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
