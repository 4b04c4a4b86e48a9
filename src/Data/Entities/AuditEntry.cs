namespace Loom.Data.Entities;

/// <summary>
/// One thing done to a key, adapter, file, fine-tune, tenant or user: who did it (an API key, a portal user or
/// the system), from which address, to what. Not filtered by tenant: platform administrators read every tenant's.
/// </summary>
public class AuditEntry
{
    public long Id { get; set; }
    public DateTimeOffset At { get; set; }
    /// <summary>The tenant whose object was acted on; null for platform-level actions.</summary>
    public Guid? TenantId { get; set; }
    /// <summary><c>api_key</c>, <c>user</c> or <c>system</c>.</summary>
    public required string ActorKind { get; set; }
    public string? ActorId { get; set; }
    /// <summary>A key's display prefix or a user's name (never a secret).</summary>
    public string? ActorName { get; set; }
    /// <summary>e.g. <c>api_key.created</c>, <c>adapter.deleted</c>.</summary>
    public required string Action { get; set; }
    public string? TargetKind { get; set; }
    public string? TargetId { get; set; }
    public string? Ip { get; set; }
    public string? Detail { get; set; }
}
