using Loom.Data.Entities;
using Microsoft.AspNetCore.Identity;

namespace Loom.Web.Portal.Identity;

/// <summary>
/// Grants or takes a portal role and bumps the user's security stamp in the same call, so every open circuit of
/// that user fails its next revalidation (<see cref="PortalAuthenticationStateProvider"/>) and signs out.
/// </summary>
public sealed class PortalRoles(UserManager<LoomUser> users)
{
    public async Task<IdentityResult> SetAsync(LoomUser user, string role, bool granted)
    {
        var has = await users.IsInRoleAsync(user, role);
        if (has == granted) return IdentityResult.Success;
        var changed = granted ? await users.AddToRoleAsync(user, role) : await users.RemoveFromRoleAsync(user, role);
        return changed.Succeeded ? await users.UpdateSecurityStampAsync(user) : changed;
    }
}
