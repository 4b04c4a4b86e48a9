using System.Security.Claims;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Components.Authorization;
using Microsoft.AspNetCore.Components.Server;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Identity;

/// <summary>
/// A circuit outlives the request that authenticated it. Every minute, check that the user still exists, is not
/// locked out, still has the security stamp of its cookie and the same roles; otherwise the circuit becomes anonymous
/// (and <see cref="TenantCircuitHandler"/> clears its tenant).
/// </summary>
public sealed class PortalAuthenticationStateProvider(
    ILoggerFactory loggerFactory, IServiceScopeFactory scopes, IOptions<IdentityOptions> identity)
    : RevalidatingServerAuthenticationStateProvider(loggerFactory)
{
    protected override TimeSpan RevalidationInterval => TimeSpan.FromMinutes(1);

    protected override async Task<bool> ValidateAuthenticationStateAsync(AuthenticationState state, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
        var user = await users.GetUserAsync(state.User);
        if (user is null || await users.IsLockedOutAsync(user)) return false;
        if (users.SupportsUserSecurityStamp
            && state.User.FindFirstValue(identity.Value.ClaimsIdentity.SecurityStampClaimType) != await users.GetSecurityStampAsync(user))
            return false;
        // Roles can change without a new stamp (a tool, a direct store call): the circuit keeps the roles it signed in with only while they still hold.
        var signedInWith = state.User.FindAll(identity.Value.ClaimsIdentity.RoleClaimType).Select(c => c.Value).ToHashSet(StringComparer.Ordinal);
        var now = (await users.GetRolesAsync(user)).ToHashSet(StringComparer.Ordinal);
        return signedInWith.SetEquals(now);
    }
}
