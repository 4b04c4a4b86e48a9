using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Administration: tenants (create, rename, share and limits, suspend and resume) and users (create with an
/// initial password, tenant and role, new password, lock and unlock), each change in the audit log; administrators only.</summary>
public sealed class AdministrationTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task ATenantIsCreatedEditedSuspendedAndResumed()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Tenants" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Tenants");
        await AssertLayoutAndLabelsAsync(page);

        var create = page.GetByRole(AriaRole.Button, new() { Name = "Create tenant" });
        await Expect(create).ToBeEnabledAsync();
        await create.ClickAsync();
        await Expect(page.Locator("#tenant-name-error")).ToHaveTextAsync("Give the tenant a name.");
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync($"acme-{suffix}");
        await page.GetByLabel("Share").FillAsync("0");
        await create.ClickAsync();
        await Expect(page.Locator("#tenant-share-error")).ToHaveTextAsync(new Regex("^The share must be greater than 0"));
        await page.GetByLabel("Share").FillAsync("2.5");
        await page.GetByLabel("Requests per minute").FillAsync("120");
        await create.ClickAsync();
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = $"acme-{suffix}", Exact = true }) });
        await Expect(row).ToContainTextAsync("2.5");
        await Expect(row).ToContainTextAsync("120");
        await Expect(row).ToContainTextAsync("Active");

        // The name is unique.
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(LoomServerFixture.TenantName);
        await create.ClickAsync();
        await Expect(page.Locator("#tenant-name-error")).ToHaveTextAsync($"A tenant named “{LoomServerFixture.TenantName}” already exists.");

        // Rename and set a token limit.
        await row.GetByRole(AriaRole.Button, new() { Name = $"Edit acme-{suffix}" }).ClickAsync();
        await Expect(page.GetByLabel("Name", new() { Exact = true })).ToHaveValueAsync($"acme-{suffix}");
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync($"acme-{suffix}-co");
        await page.GetByLabel("Tokens per minute").FillAsync("5000");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save changes" }).ClickAsync();
        row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = $"acme-{suffix}-co", Exact = true }) });
        await Expect(row).ToContainTextAsync("5,000");
        await AssertLayoutAndLabelsAsync(page);

        // Suspension stops the tenant's keys and sign-ins; resuming brings them back.
        var (user, password) = ($"sam-{suffix}", "Suspend-pw-1");
        var tenantId = await Loom.CreateTenantUserAsync($"halted-{suffix}", user, password);
        var secret = await Loom.CreateApiKeyAsync(tenantId);
        Assert.Equal(200, await ModelsStatusAsync(secret));
        await page.ReloadAsync();
        var halted = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = $"halted-{suffix}", Exact = true }) });
        await halted.GetByRole(AriaRole.Button, new() { Name = $"Suspend halted-{suffix}" }).ClickAsync();
        await halted.GetByRole(AriaRole.Button, new() { Name = "Confirm suspend" }).ClickAsync();
        await Expect(halted).ToContainTextAsync("Suspended");
        Assert.Equal(401, await ModelsStatusAsync(secret));

        var member = await OpenAsync();
        await SignInAsync(member, password, user);
        await Expect(member.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Your organisation's account is suspended. Ask an administrator to resume it.");
        await SignInAsync(member, "Wrong-password-1", user);
        await Expect(member.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Invalid user name or password.");

        await halted.GetByRole(AriaRole.Button, new() { Name = $"Resume halted-{suffix}" }).ClickAsync();
        await Expect(halted).ToContainTextAsync("Active");
        Assert.Equal(200, await ModelsStatusAsync(secret));
        await SignInAsync(member, password, user);
        await Expect(member.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync($"halted-{suffix}");

        // Every change is in the audit log, by the administrator.
        await ExpectAuditAsync(page, "tenant.", [
            ("tenant.created", $"name=acme-{suffix};"), ("tenant.updated", $"-> name=acme-{suffix}-co; share=2.5; rpm=120; tpm=5000"),
            ("tenant.suspended", $"name=halted-{suffix}"), ("tenant.resumed", $"name=halted-{suffix}")]);
    }

    /// <summary>The audit page, filtered by an action prefix, has one row per expected (action, detail) pair, each by the
    /// signed-in administrator.</summary>
    private static async Task ExpectAuditAsync(IPage page, string prefix, (string Action, string Detail)[] expected)
    {
        await page.GotoAsync("/admin/audit");
        var filter = page.GetByLabel("Action starts with");
        await Expect(filter).ToBeEnabledAsync();
        await filter.FillAsync(prefix);
        await filter.PressAsync("Tab");
        var log = page.GetByTestId("audit-log");
        foreach (var (action, detail) in expected)
        {
            var row = log.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = action, Exact = true }) }).Filter(new() { HasText = detail });
            await Expect(row).ToHaveCountAsync(1);
            await Expect(row).ToContainTextAsync($"user {LoomServerFixture.AdminUser}");
        }
    }

    [Fact]
    public async Task AUserIsCreatedGivenARoleANewPasswordAndLocked()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var tenant = $"team-{suffix}";
        await Loom.CreateTenantUserAsync(tenant, $"first-{suffix}", "First-user-pw-1");
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Users" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Users");
        await AssertLayoutAndLabelsAsync(page);

        var name = $"nina-{suffix}";
        var create = page.GetByRole(AriaRole.Button, new() { Name = "Create user" });
        await Expect(create).ToBeEnabledAsync();
        await page.GetByLabel("User name").FillAsync(name);
        await page.GetByLabel("Initial password").FillAsync("short");
        await page.GetByLabel("Tenant", new() { Exact = true }).SelectOptionAsync(new SelectOptionValue { Label = tenant });
        await create.ClickAsync();
        await Expect(page.Locator("#user-password-error")).ToContainTextAsync("Passwords must be at least 8 characters.");
        await page.GetByLabel("Initial password").FillAsync("Nina-initial-1");
        await create.ClickAsync();
        await Expect(page.GetByTestId("user-message")).ToHaveTextAsync($"User “{name}” created.");
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await Expect(row).ToContainTextAsync(tenant);
        await Expect(row).ToContainTextAsync("Member");

        var nina = await OpenAsync();
        await SignInAsync(nina, "Nina-initial-1", name);
        await Expect(nina.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(tenant);
        await Expect(nina.GetByRole(AriaRole.Link, new() { Name = "Tenants" })).ToHaveCountAsync(0);

        // Administrator role and a new password.
        await row.GetByRole(AriaRole.Button, new() { Name = $"Manage {name}" }).ClickAsync();
        var manage = page.GetByTestId("manage-user");
        await manage.GetByLabel("Administrator").CheckAsync();
        await manage.GetByRole(AriaRole.Button, new() { Name = "Save tenant and role" }).ClickAsync();
        await Expect(row).ToContainTextAsync("Administrator");
        await manage.GetByLabel("New password").FillAsync("Nina-second-2");
        await manage.GetByRole(AriaRole.Button, new() { Name = "Set password" }).ClickAsync();
        await Expect(page.GetByTestId("user-message")).ToHaveTextAsync($"New password set for “{name}”.");
        await SignInAsync(nina, "Nina-initial-1", name);
        await Expect(nina.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Invalid user name or password.");
        await SignInAsync(nina, "Nina-second-2", name);
        await Expect(nina.GetByRole(AriaRole.Link, new() { Name = "Tenants" })).ToBeVisibleAsync();

        // Locked: no sign-in until unlocked.
        await manage.GetByRole(AriaRole.Button, new() { Name = "Lock", Exact = true }).ClickAsync();
        await Expect(row).ToContainTextAsync("Locked");
        var again = await OpenAsync();
        await SignInAsync(again, "Nina-second-2", name);
        await Expect(again.GetByRole(AriaRole.Alert)).ToHaveTextAsync(new Regex("^This account is locked"));
        await manage.GetByRole(AriaRole.Button, new() { Name = "Unlock", Exact = true }).ClickAsync();
        await Expect(row).ToContainTextAsync("Active");
        await SignInAsync(again, "Nina-second-2", name);
        await Expect(again.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(tenant);

        await ExpectAuditAsync(page, "user.", [
            ("user.created", $"name={name}; admin=False"), ("user.updated", $"name={name};"), ("user.password_set", $"name={name}"),
            ("user.locked", $"name={name}"), ("user.unlocked", $"name={name}")]);
    }

    [Fact]
    public async Task MembersSeeNoAdministration()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        await Loom.CreateTenantUserAsync($"plainco-{suffix}", $"pat-{suffix}", "Plain-member-pw-1");
        var page = await OpenAsync();
        await SignInAsync(page, "Plain-member-pw-1", $"pat-{suffix}");
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Tenants" })).ToHaveCountAsync(0);
        foreach (var path in new[] { "/admin/tenants", "/admin/users" })
        {
            await page.GotoAsync(path);
            await Expect(page.GetByTestId("not-allowed")).ToBeVisibleAsync();
            await Expect(page.GetByRole(AriaRole.Table)).ToHaveCountAsync(0);
        }
    }

    private async Task<int> ModelsStatusAsync(string secret)
    {
        using var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        return (int)(await http.GetAsync("/v1/models")).StatusCode;
    }
}
