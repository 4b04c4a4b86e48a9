using System.Net;
using Loom.Data.Entities;
using Loom.Jobs.Dashboard;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.Tests;

/// <summary>The Hangfire dashboard at /admin/jobs answers portal administrators only.</summary>
public sealed class DashboardTests : IAsyncLifetime
{
    private readonly JobsDatabase _db = new();
    private WebNode? _node;

    public async Task InitializeAsync()
    {
        await _db.InitializeAsync();
        _node = new WebNode(_db.ConnectionString, "web,api");
        _ = _node.Server;
    }

    public async Task DisposeAsync()
    {
        if (_node is not null) await _node.DisposeAsync();
        await _db.DisposeAsync();
    }

    /// <summary>A portal cookie for a new user of a new tenant, made by the app's own sign-in and cookie protection.</summary>
    private async Task<string> PortalCookieAsync(bool admin)
    {
        var tenant = await _node!.CreateTenantAsync("dash");
        await using var scope = _node.Services.CreateAsyncScope();
        var sp = scope.ServiceProvider;
        var users = sp.GetRequiredService<UserManager<LoomUser>>();
        var roles = sp.GetRequiredService<RoleManager<IdentityRole<Guid>>>();
        if (!await roles.RoleExistsAsync(LoomIdentity.AdminRole)) await roles.CreateAsync(new IdentityRole<Guid>(LoomIdentity.AdminRole));
        var user = new LoomUser { Id = Guid.NewGuid(), UserName = $"u{Guid.NewGuid():N}", TenantId = tenant.Id };
        Assert.True((await users.CreateAsync(user, "Correct-Horse-Battery-9")).Succeeded);
        if (admin) Assert.True((await users.AddToRoleAsync(user, LoomIdentity.AdminRole)).Succeeded);
        var principal = await sp.GetRequiredService<SignInManager<LoomUser>>().CreateUserPrincipalAsync(user);
        var options = sp.GetRequiredService<IOptionsMonitor<CookieAuthenticationOptions>>().Get(IdentityConstants.ApplicationScheme);
        var ticket = new AuthenticationTicket(principal, new AuthenticationProperties { IssuedUtc = DateTimeOffset.UtcNow, ExpiresUtc = DateTimeOffset.UtcNow.AddHours(1) }, IdentityConstants.ApplicationScheme);
        return $"{options.Cookie.Name}={options.TicketDataFormat.Protect(ticket)}";
    }

    private async Task<HttpResponseMessage> GetAsync(string path, string? cookie, string? bearer = null)
    {
        var client = _node!.CreateClient(new() { AllowAutoRedirect = false });
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (cookie is not null) request.Headers.Add("Cookie", cookie);
        if (bearer is not null) request.Headers.Authorization = new("Bearer", bearer);
        return await client.SendAsync(request);
    }

    [Fact]
    public async Task AnonymousUsersGet401AndSignedInNonAdministrators403()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(JobsDashboard.Path, null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync($"{JobsDashboard.Path}/jobs/succeeded", null)).StatusCode);
        var tenant = await _node!.CreateTenantAsync("key");
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(JobsDashboard.Path, null, await _node.CreateKeyAsync(tenant.Id))).StatusCode);
        var user = await PortalCookieAsync(admin: false);
        Assert.Equal(HttpStatusCode.Forbidden, (await GetAsync(JobsDashboard.Path, user)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await GetAsync($"{JobsDashboard.Path}/recurring", user)).StatusCode);
    }

    [Fact]
    public async Task AdministratorsSeeTheDashboardWithItsOwnStylesAndScripts()
    {
        var admin = await PortalCookieAsync(admin: true);
        var page = await GetAsync(JobsDashboard.Path, admin);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("Loom jobs", html);
        // Its stylesheet and script are served from under the same path, to administrators.
        var assets = System.Text.RegularExpressions.Regex.Matches(html, "(?:href|src)=\"(/admin/jobs/(?:css|js)[^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Contains(assets, a => a.Contains("/css"));
        Assert.Contains(assets, a => a.Contains("/js"));
        foreach (var asset in assets)
        {
            var response = await GetAsync(WebUtility.HtmlDecode(asset), admin);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True((await response.Content.ReadAsByteArrayAsync()).Length > 1000, asset);
        }
    }
}
