namespace Loom.Data.Tenancy;

/// <summary>The tenant the current request (or job) acts for. Null means no tenant: tenant-owned queries return nothing.</summary>
public interface ITenantContext
{
    Guid? TenantId { get; }
}

/// <summary>Scoped holder set by authentication (API key or portal user) or by a job for its tenant.</summary>
public sealed class TenantContext : ITenantContext
{
    public Guid? TenantId { get; set; }
}
