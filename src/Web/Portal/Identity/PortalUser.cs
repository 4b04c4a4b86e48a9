using System.Security.Claims;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Identity;

namespace Loom.Web.Portal.Identity;

/// <summary>Reads the portal user's tenant from a principal signed in with the Identity cookie.</summary>
public static class PortalUser
{
    /// <summary>What a page shows when its circuit has no tenant (the sign-in sets it; TenantCircuitHandler): nothing is
    /// read or stored for it.</summary>
    public const string NoTenant = "Your session has no tenant. Sign out and sign in again.";

    /// <summary>The tenant claim of the cookie identity, or null (anonymous, or another scheme such as an API key).</summary>
    public static Guid? TenantOf(ClaimsPrincipal? user)
    {
        var identity = user?.Identities.FirstOrDefault(i =>
            i.IsAuthenticated && i.AuthenticationType == IdentityConstants.ApplicationScheme);
        return Guid.TryParse(identity?.FindFirst(LoomIdentity.TenantClaim)?.Value, out var id) ? id : null;
    }
}
