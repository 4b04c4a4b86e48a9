using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The portal is where keys with the manage scope are made; a plain portal key holds only inference.</summary>
public sealed class KeyScopeTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task ManageKeysAreMadeInThePortalAndPlainKeysCannotManage()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/keys");

        var plain = await CreateAsync(page, $"plain-{Guid.NewGuid():N}"[..16], manage: false);
        var manage = await CreateAsync(page, $"manage-{Guid.NewGuid():N}"[..16], manage: true);

        await using var api = await Loom.Playwright.APIRequest.NewContextAsync(new() { BaseURL = Loom.BaseUrl });
        Assert.Equal(200, await StatusAsync(api, "/v1/models", plain));
        Assert.Equal(403, await StatusAsync(api, "/v1/api_keys", plain));
        Assert.Equal(200, await StatusAsync(api, "/v1/api_keys", manage));
    }

    private static async Task<string> CreateAsync(IPage page, string name, bool manage)
    {
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
        var box = page.Locator("#key-manage");
        await Expect(box).ToBeEnabledAsync();
        if (manage) await box.CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        await Expect(page.GetByTestId("new-secret")).ToHaveTextAsync(new Regex("^sk-loom-"));
        var secret = (await page.GetByTestId("new-secret").TextContentAsync())!.Trim();
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await Expect(row).ToContainTextAsync(manage ? "inference, manage" : "inference");
        await page.GetByRole(AriaRole.Button, new() { Name = "I have copied it" }).ClickAsync();
        return secret;
    }

    private static async Task<int> StatusAsync(IAPIRequestContext api, string path, string secret) =>
        (await api.GetAsync(path, new() { Headers = new Dictionary<string, string> { ["Authorization"] = $"Bearer {secret}" } })).Status;
}
