namespace Loom.Data.Entities;

/// <summary>An API key. The secret itself is never stored: only its SHA-256 and a short display prefix.</summary>
public class ApiKey : ITenantOwned
{
    public Guid Id { get; set; }
    public Guid TenantId { get; set; }
    public required string Name { get; set; }
    /// <summary>The first characters of the secret (e.g. <c>sk-loom-AbCd</c>), shown in lists.</summary>
    public required string Prefix { get; set; }
    /// <summary>SHA-256 of the full secret, 32 bytes.</summary>
    public required byte[] SecretHash { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? LastUsedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
    /// <summary>Scheduling priority of this key's requests unless a request says otherwise.</summary>
    public RequestPriority Priority { get; set; } = RequestPriority.Interactive;

    public bool IsRevoked => RevokedAt is not null;
}

/// <summary>How urgently the engine should serve a request, within its tenant's fair share.</summary>
public enum RequestPriority
{
    /// <summary>Throughput work (evaluations, bulk generation): served after the tenant's interactive requests.</summary>
    Batch = 0,
    /// <summary>A person is waiting.</summary>
    Interactive = 1,
}
