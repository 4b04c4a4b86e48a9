using System.Security.Claims;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Identity;

/// <summary>Adds the user's tenant (<see cref="LoomIdentity.TenantClaim"/>) to the sign-in principal.</summary>
public sealed class LoomClaimsPrincipalFactory(
    UserManager<LoomUser> users, RoleManager<IdentityRole<Guid>> roles, IOptions<IdentityOptions> options)
    : UserClaimsPrincipalFactory<LoomUser, IdentityRole<Guid>>(users, roles, options)
{
    protected override async Task<ClaimsIdentity> GenerateClaimsAsync(LoomUser user)
    {
        var identity = await base.GenerateClaimsAsync(user);
        identity.AddClaim(new Claim(LoomIdentity.TenantClaim, user.TenantId.ToString()));
        return identity;
    }
}
