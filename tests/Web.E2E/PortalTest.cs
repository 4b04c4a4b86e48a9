using System.Runtime.CompilerServices;
using Microsoft.Playwright;

namespace Loom.Web.E2E;

/// <summary>
/// One browser context per test; a full-page screenshot of the test's page is saved under artifacts/ when the
/// test ends, passed or failed.
/// </summary>
[Collection(LoomCollection.Name)]
public abstract class PortalTest(LoomServerFixture loom) : IAsyncLifetime
{
    private readonly List<(IBrowserContext Context, IPage Page, string Name)> _sessions = [];

    protected LoomServerFixture Loom => loom;

    /// <summary>Opens a page in a fresh browser context (own cookies); its screenshot is named after the calling test.</summary>
    protected async Task<IPage> OpenAsync([CallerMemberName] string test = "")
    {
        var context = await loom.NewContextAsync();
        var page = await context.NewPageAsync();
        var name = $"{GetType().Name}.{test}" + (_sessions.Count == 0 ? "" : $".{_sessions.Count + 1}");
        _sessions.Add((context, page, name));
        return page;
    }

    protected static async Task SignInAsync(IPage page, string password = LoomServerFixture.AdminPassword, string user = LoomServerFixture.AdminUser)
    {
        await page.GotoAsync("/account/signin");
        await page.GetByLabel("User name", new() { Exact = true }).FillAsync(user);
        await page.GetByLabel("Password", new() { Exact = true }).FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in", Exact = true }).ClickAsync();
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var (context, page, name) in _sessions)
        {
            await page.ScreenshotAsync(new() { Path = Path.Combine(LoomServerFixture.ArtifactsDirectory, $"{name}.png"), FullPage = true });
            await context.CloseAsync();
        }
    }
}
