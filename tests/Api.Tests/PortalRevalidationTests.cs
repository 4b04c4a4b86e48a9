using System.Reflection;
using System.Security.Claims;
using Loom.Data.Entities;
using Loom.Web.Portal.Identity;
using Microsoft.AspNetCore.Components.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Api.Tests;

/// <summary>An open portal circuit loses its admin pages when the user loses the role, at the next revalidation.</summary>
public class PortalRevalidationTests(LoomFactory factory) : IClassFixture<LoomFactory>
{
    private async Task<bool> ValidAsync(ClaimsPrincipal principal)
    {
        var provider = new PortalAuthenticationStateProvider(factory.Services.GetRequiredService<ILoggerFactory>(),
            factory.Services.GetRequiredService<IServiceScopeFactory>(), factory.Services.GetRequiredService<IOptions<IdentityOptions>>());
        var validate = typeof(PortalAuthenticationStateProvider).GetMethod("ValidateAuthenticationStateAsync", BindingFlags.Instance | BindingFlags.NonPublic)!;
        return await (Task<bool>)validate.Invoke(provider, [new AuthenticationState(principal), CancellationToken.None])!;
    }

    /// <summary>The principal a sign-in would have made for the user now (id, stamp and roles).</summary>
    private async Task<ClaimsPrincipal> SignedInAsync(LoomUser user)
    {
        await using var scope = factory.Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
        var claims = factory.Services.GetRequiredService<IOptions<IdentityOptions>>().Value.ClaimsIdentity;
        var fresh = (await users.FindByIdAsync(user.Id.ToString()))!;
        var identity = new ClaimsIdentity(IdentityConstants.ApplicationScheme, claims.UserNameClaimType, claims.RoleClaimType);
        identity.AddClaim(new Claim(claims.UserIdClaimType, fresh.Id.ToString()));
        identity.AddClaim(new Claim(claims.UserNameClaimType, fresh.UserName!));
        identity.AddClaim(new Claim(claims.SecurityStampClaimType, (await users.GetSecurityStampAsync(fresh))!));
        foreach (var role in await users.GetRolesAsync(fresh)) identity.AddClaim(new Claim(claims.RoleClaimType, role));
        return new ClaimsPrincipal(identity);
    }

    private async Task<LoomUser> AdminAsync()
    {
        var tenant = await factory.CreateTenantAsync($"reval-{Guid.NewGuid():N}");
        await using var scope = factory.Services.CreateAsyncScope();
        var roles = scope.ServiceProvider.GetRequiredService<RoleManager<IdentityRole<Guid>>>();
        foreach (var role in new[] { LoomIdentity.PlatformAdminRole, LoomIdentity.TenantAdminRole })
            if (!await roles.RoleExistsAsync(role)) await roles.CreateAsync(new IdentityRole<Guid>(role));
        var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
        var user = new LoomUser { Id = Guid.NewGuid(), UserName = $"adm{Guid.NewGuid():N}"[..14], TenantId = tenant.Id };
        Assert.True((await users.CreateAsync(user, "Admin-Pass-123")).Succeeded);
        Assert.True((await users.AddToRoleAsync(user, LoomIdentity.PlatformAdminRole)).Succeeded);
        return user;
    }

    [Fact]
    public async Task RemovingTheAdminRoleInvalidatesAnOpenCircuit()
    {
        var user = await AdminAsync();
        var circuit = await SignedInAsync(user);
        Assert.True(await ValidAsync(circuit));

        // The role is taken away directly in the store (as any tool could), without touching the security stamp.
        await using (var scope = factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
            Assert.True((await users.RemoveFromRoleAsync((await users.FindByIdAsync(user.Id.ToString()))!, LoomIdentity.PlatformAdminRole)).Succeeded);
        }
        Assert.False(await ValidAsync(circuit));
        // A sign-in now (no admin role) is valid.
        Assert.True(await ValidAsync(await SignedInAsync(user)));
    }

    [Fact]
    public async Task PortalRolesBumpsTheSecurityStamp()
    {
        var user = await AdminAsync();
        var circuit = await SignedInAsync(user);
        await using (var scope = factory.Services.CreateAsyncScope())
        {
            var users = scope.ServiceProvider.GetRequiredService<UserManager<LoomUser>>();
            var fresh = (await users.FindByIdAsync(user.Id.ToString()))!;
            var stamp = await users.GetSecurityStampAsync(fresh);
            Assert.True((await new PortalRoles(users).SetAsync(fresh, LoomIdentity.TenantAdminRole, granted: true)).Succeeded);
            Assert.NotEqual(stamp, await users.GetSecurityStampAsync(fresh));
        }
        Assert.False(await ValidAsync(circuit));
    }
}
