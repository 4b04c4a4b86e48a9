using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The Hangfire dashboard at /admin/jobs, reached from the portal's admin navigation, loads whole in
/// Chromium (its own CSS and JS, no failed request); a signed-in user without the admin role is refused.</summary>
public sealed class JobsDashboardTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task AnAdministratorOpensTheJobsDashboardFromThePortal()
    {
        var page = await OpenAsync();
        var failed = new List<string>();
        page.RequestFailed += (_, r) => failed.Add($"{r.Url} {r.Failure}");
        page.Response += (_, r) => { if (r.Status >= 400) failed.Add($"{r.Url} {r.Status}"); };
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Link, new() { Name = "Jobs", Exact = true }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/admin/jobs/?$"));
        await Expect(page).ToHaveTitleAsync(new System.Text.RegularExpressions.Regex("Loom jobs"));
        // Its stylesheet applied (Bootstrap's navbar is fixed at the top) and its scripts ran (the live chart).
        await Expect(page.Locator(".navbar").First).ToBeVisibleAsync();
        Assert.Equal("fixed", await page.Locator(".navbar").First.EvaluateAsync<string>("e => getComputedStyle(e).position"));
        await page.WaitForLoadStateAsync(LoadState.NetworkIdle);
        Assert.Empty(failed);
    }

    [Fact]
    public async Task AUserWithoutTheAdminRoleIsRefused()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (tenant, user, password) = ($"nojobs-{suffix}", $"dave-{suffix}", "Plain-user-pw-1");
        await Loom.CreateTenantUserAsync(tenant, user, password);
        var page = await OpenAsync();
        await SignInAsync(page, password, user);
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(tenant);
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Jobs", Exact = true })).ToHaveCountAsync(0);
        // With this user's cookie (the page's context), the dashboard answers 403.
        var response = await page.APIRequest.GetAsync("/admin/jobs");
        Assert.Equal(403, response.Status);
    }
}
