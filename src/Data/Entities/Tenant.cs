namespace Loom.Data.Entities;

/// <summary>A customer organisation. Everything a tenant owns carries its <see cref="Id"/>.</summary>
public class Tenant
{
    public Guid Id { get; set; }
    public required string Name { get; set; }
    /// <summary>Fair-share weight used by the engine's scheduler (virtual token counters); 1 by default.</summary>
    public double ShareWeight { get; set; } = 1.0;
    /// <summary>Per-tenant override of the requests-per-minute limit; null uses the configured default.</summary>
    public int? RequestsPerMinute { get; set; }
    /// <summary>Per-tenant override of the tokens-per-minute limit; null uses the configured default.</summary>
    public int? TokensPerMinute { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>Set while an administrator has suspended the tenant: its API keys do not authenticate and its users cannot sign in.</summary>
    public DateTimeOffset? SuspendedAt { get; set; }

    public bool IsSuspended => SuspendedAt is not null;
}
