using Microsoft.AspNetCore.Identity;

namespace Loom.Data.Entities;

/// <summary>A portal user (ASP.NET Core Identity), member of one tenant.</summary>
public class LoomUser : IdentityUser<Guid>
{
    public Guid TenantId { get; set; }
    public Tenant? Tenant { get; set; }
}

/// <summary>Names of the portal's roles and claims.</summary>
public static class LoomIdentity
{
    /// <summary>Platform administrator: sees every tenant (engine, jobs, audit log). Stored as "admin".</summary>
    public const string PlatformAdminRole = "admin";
    /// <summary>Administrator of one tenant (its users and keys); grants nothing across tenants.</summary>
    public const string TenantAdminRole = "tenant-admin";
    /// <summary>The platform administrator role (the name pages and the seeder have used).</summary>
    public const string AdminRole = PlatformAdminRole;
    /// <summary>Claim carrying the user's tenant id (added at sign-in).</summary>
    public const string TenantClaim = "loom:tenant_id";
}
