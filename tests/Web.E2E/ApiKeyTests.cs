using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

public sealed class ApiKeyTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task CreatedKeyIsShownOnceWorksIsListedAndStopsWorkingWhenRevoked()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "API keys" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("API keys");

        // Create: the secret is shown with a warning and a copy button.
        var name = $"e2e-{Guid.NewGuid():N}"[..16];
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var secretBox = page.GetByTestId("new-secret");
        await Expect(secretBox).ToHaveTextAsync(new Regex("^sk-loom-[0-9A-Za-z]{43}$"));
        await Expect(page.GetByText("It will not be shown again")).ToBeVisibleAsync();
        var secret = (await secretBox.TextContentAsync())!.Trim();

        await page.GetByRole(AriaRole.Button, new() { Name = "Copy", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Copied", Exact = true })).ToBeVisibleAsync();
        Assert.Equal(secret, await page.EvaluateAsync<string>("() => navigator.clipboard.readText()"));

        // The secret is a working key for the API.
        await using var api = await Loom.Playwright.APIRequest.NewContextAsync(new() { BaseURL = Loom.BaseUrl });
        Assert.Equal(200, await ModelsStatusAsync(api, secret));

        // Listed with its prefix, active.
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await Expect(row).ToHaveCountAsync(1);
        await Expect(row).ToContainTextAsync(secret[..12]);
        await Expect(row).ToContainTextAsync("Active");

        // Shown once: after a reload the key is still listed but its secret is nowhere on the page.
        await page.ReloadAsync();
        await Expect(row).ToContainTextAsync("Active");
        await Expect(page.GetByTestId("new-secret")).ToHaveCountAsync(0);
        Assert.DoesNotContain(secret, await page.ContentAsync());

        // Revoke, with a confirmation step.
        await row.GetByRole(AriaRole.Button, new() { Name = $"Revoke {name}" }).ClickAsync();
        await Expect(row.GetByText($"Revoke “{name}”?")).ToBeVisibleAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Confirm revoke" }).ClickAsync();
        await Expect(row).ToContainTextAsync("Revoked");
        await Expect(row.GetByRole(AriaRole.Button)).ToHaveCountAsync(0);

        Assert.Equal(401, await ModelsStatusAsync(api, secret));

        // Still revoked after a reload (persisted, not just client state).
        await page.ReloadAsync();
        await Expect(row).ToContainTextAsync("Revoked");
    }

    [Fact]
    public async Task CancellingTheConfirmationKeepsTheKeyActive()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/keys");

        var name = $"keep-{Guid.NewGuid():N}"[..16];
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        await Expect(page.GetByTestId("new-secret")).ToHaveTextAsync(new Regex("^sk-loom-"));
        var secret = (await page.GetByTestId("new-secret").TextContentAsync())!.Trim();

        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await row.GetByRole(AriaRole.Button, new() { Name = $"Revoke {name}" }).ClickAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Cancel" }).ClickAsync();
        await Expect(row.GetByRole(AriaRole.Button, new() { Name = $"Revoke {name}" })).ToBeVisibleAsync();
        await Expect(row).ToContainTextAsync("Active");

        await using var api = await Loom.Playwright.APIRequest.NewContextAsync(new() { BaseURL = Loom.BaseUrl });
        Assert.Equal(200, await ModelsStatusAsync(api, secret));
    }

    [Fact]
    public async Task AnEmptyNameIsRejected()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/keys");

        var rows = page.GetByRole(AriaRole.Row);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Create key" })).ToBeEnabledAsync();
        // the list loads after the form is enabled: count its rows only once it is there (other tests' keys fill it)
        await Expect(page.GetByText("Loading…")).ToHaveCountAsync(0);
        var before = await rows.CountAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();

        await Expect(page.GetByText("Give the key a name.")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("new-secret")).ToHaveCountAsync(0);
        Assert.Equal(before, await rows.CountAsync());
    }

    private static async Task<int> ModelsStatusAsync(IAPIRequestContext api, string secret)
    {
        var response = await api.GetAsync("/v1/models", new() { Headers = new Dictionary<string, string> { ["Authorization"] = $"Bearer {secret}" } });
        return response.Status;
    }
}
