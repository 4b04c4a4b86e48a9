using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

public sealed class TenantIsolationTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task EachTenantSeesOnlyItsOwnKeys()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (tenant, user, password) = ($"other-{suffix}", $"bob-{suffix}", "Other-tenant-pw-1");
        await Loom.CreateTenantUserAsync(tenant, user, password);

        // The other tenant's user starts with no keys: the demo tenant's key is not visible.
        var bob = await OpenAsync();
        await SignInAsync(bob, password, user);
        await Expect(bob.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(tenant);
        await bob.GotoAsync("/keys");
        await Expect(bob.GetByText("No keys yet.")).ToBeVisibleAsync();
        var bobsKey = $"bob-key-{suffix}";
        await bob.GetByLabel("Name", new() { Exact = true }).FillAsync(bobsKey);
        await bob.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        await Expect(bob.GetByRole(AriaRole.Rowheader, new() { Name = bobsKey, Exact = true })).ToBeVisibleAsync();
        await Expect(bob.GetByRole(AriaRole.Rowheader, new() { Name = "demo key", Exact = true })).ToHaveCountAsync(0);

        // The demo tenant's admin sees its own key and not the other tenant's.
        var admin = await OpenAsync();
        await SignInAsync(admin);
        await admin.GotoAsync("/keys");
        await Expect(admin.GetByRole(AriaRole.Button, new() { Name = "Create key" })).ToBeEnabledAsync();
        await Expect(admin.GetByRole(AriaRole.Rowheader, new() { Name = "demo key", Exact = true })).ToBeVisibleAsync();
        await Expect(admin.GetByRole(AriaRole.Rowheader, new() { Name = bobsKey, Exact = true })).ToHaveCountAsync(0);
    }
}
