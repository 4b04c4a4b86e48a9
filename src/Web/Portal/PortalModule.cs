using Loom.Api.Limits;
using Loom.Data.Entities;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Loom.Web.Portal.Identity;
using Microsoft.AspNetCore.Components.Authorization;
using Microsoft.AspNetCore.Components.Server.Circuits;
using Microsoft.AspNetCore.Identity;

namespace Loom.Web.Portal;

/// <summary>The portal: Blazor components (interactive server), cookie sign-in for portal users, tenant scoping.</summary>
public static class PortalModule
{
    public const string SignInPath = "/account/signin";
    public const string SignOutPath = "/account/signout";
    public const string AccessDeniedPath = "/account/denied";

    public static IServiceCollection AddPortal(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddCascadingAuthenticationState();

        // The data module registers the Identity stores; the portal adds sign-in and cookies.
        services.AddIdentityCore<LoomUser>()
            .AddSignInManager<LoomSignInManager>()
            .AddClaimsPrincipalFactory<LoomClaimsPrincipalFactory>();
        services.AddAuthentication(IdentityConstants.ApplicationScheme).AddIdentityCookies();
        services.ConfigureApplicationCookie(o =>
        {
            o.Cookie.Name = "loom.portal";
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Lax;
            // Secure whenever the request came over HTTPS (directly, or through a proxy named in Loom:Proxy).
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            o.LoginPath = SignInPath;
            o.LogoutPath = SignOutPath;
            o.AccessDeniedPath = AccessDeniedPath;
            o.SlidingExpiration = true;
            o.ExpireTimeSpan = TimeSpan.FromHours(8);
        });
        services.AddAuthorization();
        services.AddAntiforgery(o => o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest);
        // Failed sign-ins per client address, shared with the API's failed key checks.
        services.AddOptions<FailedAuthOptions>().BindConfiguration("Api:FailedAuth");
        services.TryAddSingleton<FailedAuthLimiter>();

        services.AddScoped<AuthenticationStateProvider, PortalAuthenticationStateProvider>();
        services.AddScoped<PortalRoles>();

        // A circuit has its own DI scope: give its TenantContext the signed-in user's tenant.
        services.AddScoped<CircuitHandler, TenantCircuitHandler>();
        services.AddScoped<Playground.PlaygroundModels>();
        services.AddSingleton<Uploads.PortalUploadGate>();
        services.AddScoped<Admin.TenantAdministration>();
        services.AddScoped<Admin.UserAdministration>();
        services.AddScoped<Admin.Invitations>();
        services.AddOptions<Admin.InvitationOptions>().BindConfiguration("Portal:Invitations")
            .Validate(o => o.Lifetime > TimeSpan.Zero && o.Lifetime <= TimeSpan.FromDays(30), "Portal:Invitations:Lifetime must be positive and at most 30 days.")
            .ValidateOnStart();
        services.AddSingleton<Admin.EngineHistory>();
        services.AddHostedService(sp => sp.GetRequiredService<Admin.EngineHistory>());
        return services;
    }

    public static WebApplication MapPortal(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseMiddleware<PortalTenantMiddleware>();
        app.UseAntiforgery();

        app.MapStaticAssets();
        app.MapRazorComponents<App>().AddInteractiveServerRenderMode();
        app.MapAccountEndpoints();
        return app;
    }
}
