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
    private IBrowserContext? _context;
    private IPage? _page;
    private string _name = "unnamed";

    protected LoomServerFixture Loom => loom;

    /// <summary>Opens the page for this test; its screenshot is named after the calling test.</summary>
    protected async Task<IPage> OpenAsync([CallerMemberName] string test = "")
    {
        _name = $"{GetType().Name}.{test}";
        _context = await loom.NewContextAsync();
        _page = await _context.NewPageAsync();
        return _page;
    }

    protected static async Task SignInAsync(IPage page, string password = LoomServerFixture.AdminPassword)
    {
        await page.GotoAsync("/account/signin");
        await page.GetByLabel("User name", new() { Exact = true }).FillAsync(LoomServerFixture.AdminUser);
        await page.GetByLabel("Password", new() { Exact = true }).FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in", Exact = true }).ClickAsync();
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_page is not null)
            await _page.ScreenshotAsync(new() { Path = Path.Combine(LoomServerFixture.ArtifactsDirectory, $"{_name}.png"), FullPage = true });
        if (_context is not null) await _context.CloseAsync();
    }
}
