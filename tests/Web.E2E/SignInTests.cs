using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

public sealed class SignInTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task WrongPasswordIsRejectedWithAMessage()
    {
        var page = await OpenAsync();
        await SignInAsync(page, password: "not-the-password");

        await Expect(page.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Invalid user name or password.");
        await Expect(page).ToHaveURLAsync(new Regex("/account/signin$"));
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Sign out" })).ToHaveCountAsync(0);

        await page.GotoAsync("/keys");
        await Expect(page).ToHaveURLAsync(new Regex(@"/account/signin\?ReturnUrl=%2Fkeys$"));
    }

    [Fact]
    public async Task SignInShowsTheTenantHomePage()
    {
        var page = await OpenAsync();
        await SignInAsync(page);

        await Expect(page).ToHaveURLAsync(new Regex("/$"));
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(LoomServerFixture.TenantName);
        await Expect(page.GetByTestId("current-user")).ToHaveTextAsync(LoomServerFixture.AdminUser);
        await Expect(page.GetByRole(AriaRole.Main)).ToContainTextAsync("(administrator)");
    }

    [Fact]
    public async Task SignOutReturnsToSignInAndTheKeysPageThenRedirects()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "API keys" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("API keys");

        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new Regex("/account/signin$"));
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Sign in" })).ToBeVisibleAsync();

        await page.GotoAsync("/keys");
        await Expect(page).ToHaveURLAsync(new Regex(@"/account/signin\?ReturnUrl=%2Fkeys$"));

        // Signing in again goes back where the user was headed.
        await page.GetByLabel("User name", new() { Exact = true }).FillAsync(LoomServerFixture.AdminUser);
        await page.GetByLabel("Password", new() { Exact = true }).FillAsync(LoomServerFixture.AdminPassword);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in", Exact = true }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new Regex("/keys$"));
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("API keys");
    }
}
