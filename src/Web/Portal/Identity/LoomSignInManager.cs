using Loom.Data;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Identity;

/// <summary>Identity's sign-in, refusing users whose tenant is suspended (the sign-in result is "not allowed").</summary>
public sealed class LoomSignInManager(
    UserManager<LoomUser> users, IHttpContextAccessor context, IUserClaimsPrincipalFactory<LoomUser> claims,
    IOptions<IdentityOptions> options, ILogger<SignInManager<LoomUser>> logger, IAuthenticationSchemeProvider schemes,
    IUserConfirmation<LoomUser> confirmation, PlatformDbContext db)
    : SignInManager<LoomUser>(users, context, claims, options, logger, schemes, confirmation)
{
    public override async Task<bool> CanSignInAsync(LoomUser user)
    {
        if (!await base.CanSignInAsync(user)) return false;
        return !await db.Tenants.AsNoTracking().AnyAsync(t => t.Id == user.TenantId && t.SuspendedAt != null);
    }
}
