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
    /// <summary>What the key may do. Keys made through the API hold at most <see cref="ApiKeyScopes.Inference"/>.</summary>
    public ApiKeyScopes Scopes { get; set; } = ApiKeyScopes.Inference;
    /// <summary>After this instant the key no longer authenticates; null: no expiry.</summary>
    public DateTimeOffset? ExpiresAt { get; set; }

    public bool IsRevoked => RevokedAt is not null;

    public bool IsExpired(DateTimeOffset now) => ExpiresAt is { } at && at <= now;
}

/// <summary>What an API key may do.</summary>
[Flags]
public enum ApiKeyScopes
{
    None = 0,
    /// <summary>Models, chat completions, completions, usage: the calls an application makes.</summary>
    Inference = 1,
    /// <summary>Keys, files, adapters, fine-tunes: changes to what the tenant owns. Created only in the portal.</summary>
    Manage = 2,
    All = Inference | Manage,
}

/// <summary>How urgently the engine should serve a request, within its tenant's fair share.</summary>
public enum RequestPriority
{
    /// <summary>Throughput work (evaluations, bulk generation): served after the tenant's interactive requests.</summary>
    Batch = 0,
    /// <summary>A person is waiting.</summary>
    Interactive = 1,
}
