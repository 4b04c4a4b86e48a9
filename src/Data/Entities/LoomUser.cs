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
    public const string AdminRole = "admin";
    /// <summary>Claim carrying the user's tenant id (added at sign-in).</summary>
    public const string TenantClaim = "loom:tenant_id";
}
