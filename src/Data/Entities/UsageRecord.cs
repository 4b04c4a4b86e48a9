namespace Loom.Data.Entities;

/// <summary>One completion served: who, which model or adapter, how many tokens, how long.</summary>
public class UsageRecord : ITenantOwned
{
    public long Id { get; set; }
    /// <summary>Identifies the request, so a retried write of the same record inserts it once.</summary>
    public Guid RequestId { get; set; } = Guid.NewGuid();
    public Guid TenantId { get; set; }
    public Guid? ApiKeyId { get; set; }
    /// <summary>The model id as requested (base model or adapter name).</summary>
    public required string Model { get; set; }
    public Guid? AdapterId { get; set; }
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
    public int LatencyMs { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
