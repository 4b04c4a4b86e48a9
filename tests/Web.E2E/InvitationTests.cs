using System.Text.RegularExpressions;
using Loom.Data;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Invitations: an administrator invites by email address and gets a one-time link; the invited user sets a
/// password through it and signs in; a used, expired or altered link is refused. Both ends are in the audit log.</summary>
public sealed class InvitationTests(LoomServerFixture loom) : PortalTest(loom)
{
    private async Task<(IPage Admin, string Email, string Link)> InviteAsync(string prefix, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        var email = $"{prefix}-{Guid.NewGuid():N}"[..20] + "@example.com";
        var admin = await OpenAsync(test);
        await SignInAsync(admin);
        await admin.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Users" }).ClickAsync();
        var invite = admin.GetByRole(AriaRole.Button, new() { Name = "Create invitation link" });
        await Expect(invite).ToBeEnabledAsync();
        await admin.GetByLabel("Email address").FillAsync(email);
        await admin.Locator("#invite-tenant").SelectOptionAsync(new SelectOptionValue { Label = LoomServerFixture.TenantName });
        await invite.ClickAsync();
        var link = (await admin.GetByTestId("invite-link").TextContentAsync())!.Trim();
        Assert.Matches(new Regex(@"/account/invitation/[0-9a-f-]{36}\?token=[A-Za-z0-9_%-]{40,}$"), link);
        var row = admin.GetByRole(AriaRole.Row).Filter(new() { Has = admin.GetByRole(AriaRole.Rowheader, new() { Name = email, Exact = true }) });
        await Expect(row).ToContainTextAsync("Invited");
        return (admin, email, link);
    }

    [Fact]
    public async Task AnInvitedUserSetsAPasswordOnceAndSignsIn()
    {
        var (admin, email, link) = await InviteAsync("ivy");
        await AssertLayoutAndLabelsAsync(admin);

        // Refusals next to the field.
        var invite = admin.GetByRole(AriaRole.Button, new() { Name = "Create invitation link" });
        await admin.GetByLabel("Email address").FillAsync("not an address");
        await admin.Locator("#invite-tenant").SelectOptionAsync(new SelectOptionValue { Label = LoomServerFixture.TenantName });
        await invite.ClickAsync();
        await Expect(admin.Locator("#invite-email-error")).ToHaveTextAsync("That is not an email address.");
        await admin.GetByLabel("Email address").FillAsync(email);
        await invite.ClickAsync();
        await Expect(admin.Locator("#invite-email-error")).ToHaveTextAsync($"A user “{email}” already exists.");

        var guest = await OpenAsync();
        await guest.GotoAsync(link);
        await Expect(guest.GetByTestId("invited-user")).ToHaveTextAsync(email);
        var set = guest.GetByRole(AriaRole.Button, new() { Name = "Set password" });
        await Expect(set).ToBeEnabledAsync();
        await AssertLayoutAndLabelsAsync(guest);
        await guest.GetByLabel("Password", new() { Exact = true }).FillAsync("Invited-pw-1");
        await guest.GetByLabel("Repeat the password").FillAsync("Invited-pw-2");
        await set.ClickAsync();
        await Expect(guest.Locator("#invite-confirm-error")).ToHaveTextAsync("The two passwords differ.");
        await guest.GetByLabel("Password", new() { Exact = true }).FillAsync("short");
        await guest.GetByLabel("Repeat the password").FillAsync("short");
        await set.ClickAsync();
        await Expect(guest.Locator("#invite-password-error")).ToContainTextAsync("Passwords must be at least");
        await guest.GetByLabel("Password", new() { Exact = true }).FillAsync("Invited-pw-1");
        await guest.GetByLabel("Repeat the password").FillAsync("Invited-pw-1");
        await set.ClickAsync();
        await Expect(guest.GetByTestId("invitation-done")).ToBeVisibleAsync();

        await SignInAsync(guest, "Invited-pw-1", email);
        await Expect(guest.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(LoomServerFixture.TenantName);

        // The link works once.
        var again = await OpenAsync();
        await again.GotoAsync(link);
        await Expect(again.GetByTestId("invitation-refused")).ToHaveTextAsync("This invitation link was used already. Sign in with your password.");

        await admin.GotoAsync("/admin/audit");
        await admin.GetByLabel("Action starts with").FillAsync("user.invit");
        await admin.GetByLabel("Action starts with").PressAsync("Tab");
        var log = admin.GetByTestId("audit-log");
        await Expect(log.GetByRole(AriaRole.Row).Filter(new() { HasText = "user.invitation_accepted" }).Filter(new() { HasText = email })).ToHaveCountAsync(1);
        await Expect(log.GetByRole(AriaRole.Row).Filter(new() { HasText = "user.invited" }).Filter(new() { HasText = email })).ToContainTextAsync(LoomServerFixture.AdminUser);
    }

    [Fact]
    public async Task AnExpiredOrAlteredLinkIsRefused()
    {
        var (_, email, link) = await InviteAsync("exp");
        var guest = await OpenAsync();

        var altered = link[..^4] + (link.EndsWith("AAAA") ? "BBBB" : "AAAA");
        await guest.GotoAsync(altered);
        await Expect(guest.GetByTestId("invitation-refused")).ToHaveTextAsync("This invitation link is not valid.");
        await guest.GotoAsync(link[..link.IndexOf('?')]);
        await Expect(guest.GetByTestId("invitation-refused")).ToHaveTextAsync("This invitation link is not valid.");

        // The stored expiry moves into the past, as if the link's lifetime had gone by.
        await Loom.WithDatabaseAsync(async services =>
        {
            var db = services.GetRequiredService<PlatformDbContext>();
            var user = await db.Users.SingleAsync(u => u.UserName == email);
            var token = await db.Set<IdentityUserToken<Guid>>().SingleAsync(t => t.UserId == user.Id && t.Name == "invitation");
            token.Value = $"{DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds()}:{token.Value!.Split(':')[1]}";
            await db.SaveChangesAsync();
        });
        await guest.GotoAsync(link);
        await Expect(guest.GetByTestId("invitation-refused")).ToHaveTextAsync(new Regex("^This invitation link expired at .* UTC. Ask your administrator for a new one.$"));
        await Expect(guest.GetByLabel("Password", new() { Exact = true })).ToHaveCountAsync(0);

        // Nobody can sign in as the invited user meanwhile.
        await SignInAsync(guest, "Any-password-1", email);
        await Expect(guest.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Invalid user name or password.");
    }
}
