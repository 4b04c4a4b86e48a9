using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Microsoft.Playwright;

namespace Loom.Web.E2E;

/// <summary>
/// One browser context per test; a full-page screenshot of the test's page is saved under artifacts/ when the
/// test ends, passed or failed. A test fails when its pages logged a console error, threw, or saw a request fail or
/// answer 4xx/5xx, unless the test allowed that message with <see cref="Allow"/>.
/// </summary>
[Collection(LoomCollection.Name)]
public abstract class PortalTest(LoomServerFixture loom) : IAsyncLifetime
{
    private readonly List<(IBrowserContext Context, IPage Page, string Name)> _sessions = [];
    private readonly List<string> _problems = [];
    private readonly List<Regex> _allowed = [];

    protected LoomServerFixture Loom => loom;

    /// <summary>Opens a page in a fresh browser context (own cookies); its screenshot is named after the calling test.</summary>
    protected async Task<IPage> OpenAsync([CallerMemberName] string test = "")
    {
        var context = await loom.NewContextAsync();
        var page = await context.NewPageAsync();
        var name = $"{GetType().Name}.{test}" + (_sessions.Count == 0 ? "" : $".{_sessions.Count + 1}");
        _sessions.Add((context, page, name));
        page.Console += (_, m) => { if (m.Type == "error") Problem($"console error: {m.Text}"); };
        page.PageError += (_, e) => Problem($"page error: {e}");
        page.RequestFailed += (_, r) =>
        {
            // Requests cut short by a navigation are not failures.
            if (r.Failure is not "net::ERR_ABORTED") Problem($"request failed: {r.Method} {r.Url}: {r.Failure}");
        };
        page.Response += (_, r) => { if (r.Status >= 400) Problem($"HTTP {r.Status}: {r.Request.Method} {r.Url}"); };
        return page;
    }

    /// <summary>Lets a console message or request failure that the test provokes on purpose pass.</summary>
    protected void Allow(Regex problem)
    {
        lock (_problems) _allowed.Add(problem);
    }

    private void Problem(string text)
    {
        lock (_problems) _problems.Add(text);
    }

    /// <summary>Sets an InputFile's files once Blazor has hooked its change event (before that, a pick is lost:
    /// the button next to it can already be enabled while the input's script is still being attached).</summary>
    protected static async Task SetFilesAsync(ILocator input, IEnumerable<string> files)
    {
        await WaitForInputFileAsync(input);
        await input.SetInputFilesAsync(files);
    }

    protected static Task SetFilesAsync(ILocator input, string file) => SetFilesAsync(input, [file]);

    protected static async Task SetFilesAsync(ILocator input, FilePayload file)
    {
        await WaitForInputFileAsync(input);
        await input.SetInputFilesAsync(file);
    }

    protected static async Task SetFilesAsync(ILocator input, IEnumerable<FilePayload> files)
    {
        await WaitForInputFileAsync(input);
        await input.SetInputFilesAsync(files);
    }

    private static async Task WaitForInputFileAsync(ILocator input)
    {
        var handle = await input.ElementHandleAsync();
        await input.Page.WaitForFunctionAsync("e => e._blazorInputFileNextFileId !== undefined", handle);
    }

    protected static async Task SignInAsync(IPage page, string password = LoomServerFixture.AdminPassword, string user = LoomServerFixture.AdminUser)
    {
        await page.GotoAsync("/account/signin");
        await page.GetByLabel("User name", new() { Exact = true }).FillAsync(user);
        await page.GetByLabel("Password", new() { Exact = true }).FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in", Exact = true }).ClickAsync();
    }

    /// <summary>The page fits a 1280px and a 390px wide window without sideways scrolling, and every form control has
    /// a label (or an accessible name) a screen reader and keyboard user can find it by.</summary>
    protected static async Task AssertLayoutAndLabelsAsync(IPage page)
    {
        var unlabelled = await page.EvaluateAsync<string[]>("""
            () => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
                             && !(e.tagName === 'BUTTON' && e.textContent.trim()))
                .map(e => e.outerHTML.slice(0, 120))
            """);
        Assert.True(unlabelled.Length == 0, "controls without a label: " + string.Join("; ", unlabelled));
        foreach (var width in new[] { 1280, 390 })
        {
            await page.SetViewportSizeAsync(width, 844);
            // Charts resize on the next frames after the window does: give the layout a moment to settle.
            const string fits = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth";
            try { await page.WaitForFunctionAsync(fits, null, new() { Timeout = 3000 }); }
            catch (TimeoutException) { }
            var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - document.documentElement.clientWidth");
            if (overflow > 0)
            {
                var wide = await page.EvaluateAsync<string[]>("""
                    () => {
                        const over = e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1;
                        return [...document.body.querySelectorAll('*')].filter(e => over(e) && !over(e.parentElement))
                            .slice(0, 5).map(e => `${e.tagName}.${e.className} right=${Math.round(e.getBoundingClientRect().right)} in ${e.parentElement.tagName}.${e.parentElement.className} overflow-x=${getComputedStyle(e.parentElement).overflowX}`);
                    }
                    """);
                Assert.Fail($"the page is {overflow}px wider than a {width}px window: {string.Join(", ", wide)}");
            }
        }
        await page.SetViewportSizeAsync(1280, 800);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var (_, page, name) in _sessions)
            await page.ScreenshotAsync(new() { Path = Path.Combine(LoomServerFixture.ArtifactsDirectory, $"{name}.png"), FullPage = true });
        string[] problems;
        lock (_problems) problems = _problems.Where(p => !_allowed.Any(a => a.IsMatch(p))).ToArray();
        foreach (var (context, _, _) in _sessions) await context.CloseAsync();
        Assert.True(problems.Length == 0, "the browser saw problems:\n" + string.Join("\n", problems));
    }
}
