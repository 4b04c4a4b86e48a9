using System.Text;
using Loom.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>
/// Walks every portal page with data in it and saves a screenshot of each: into LOOM_SCREENSHOTS when set (what
/// tools/screenshots/take.sh does, for docs/screenshots), else under artifacts/screenshots. Each page must load
/// without a browser problem, so the tour is also a smoke test of the whole portal.
/// </summary>
public sealed class ScreenshotTour(LoomServerFixture loom) : PortalTest(loom)
{
    private static string Folder =>
        Environment.GetEnvironmentVariable("LOOM_SCREENSHOTS") is { Length: > 0 } dir ? dir : Path.Combine(LoomServerFixture.ArtifactsDirectory, "screenshots");

    [Fact]
    public async Task EveryPageRendersWithData()
    {
        Directory.CreateDirectory(Folder);
        var page = await OpenAsync();
        await page.GotoAsync("/account/signin");
        await Shot(page, "signin", "Sign in");
        await SignInAsync(page);
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(LoomServerFixture.TenantName);
        await Shot(page, "home", LoomServerFixture.TenantName);

        // An adapter, a training file, a chat, some usage.
        await page.GotoAsync("/adapters");
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" })).ToBeEnabledAsync();
        var adapter = "support-bot-v1";
        if (await page.GetByRole(AriaRole.Rowheader, new() { Name = adapter, Exact = true }).CountAsync() == 0)
        {
            await page.GetByLabel("Name", new() { Exact = true }).FillAsync(adapter);
            await page.GetByLabel("Files").SetInputFilesAsync(new[] { "adapter_config.json", "adapter_model.safetensors" }.Select(f => Path.Combine(LoomServerFixture.GoldenAdapterDirectory, f)));
            await page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" }).ClickAsync();
            await Expect(page.GetByTestId("upload-done")).ToBeVisibleAsync();
        }
        await Shot(page, "adapters", "Adapters");
        await page.GotoAsync($"/adapters/{adapter}");
        await Shot(page, "adapter-detail", adapter);

        await page.GotoAsync("/files");
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload file" })).ToBeEnabledAsync();
        var lines = Enumerable.Range(1, 40).Select(i => $$"""{"messages":[{"role":"user","content":"word {{i}}?"},{"role":"assistant","content":"gloss {{i}}"}]}""");
        await page.GetByLabel("JSONL file").SetInputFilesAsync(new FilePayload { Name = "glossary-train.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Valid.");
        await page.GetByLabel("JSONL file").SetInputFilesAsync(new FilePayload { Name = "glossary-bad.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", lines.Take(6)) + "\n{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Line 7:");
        await Shot(page, "files", "Files");

        await page.GotoAsync($"/playground?model={adapter}");
        await page.GetByLabel("System prompt").FillAsync("You write one-line glossary entries.");
        await page.GetByLabel("Max tokens").FillAsync("24");
        await page.GetByLabel("Seed").FillAsync("7");
        await page.GetByLabel("Message").FillAsync("harbor (noun):");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("^Done"));
        await page.GetByRole(AriaRole.Tab, new() { Name = "Python" }).ClickAsync();
        await Shot(page, "playground", "Playground");
        await page.SetViewportSizeAsync(390, 844);
        await Shot(page, "playground-390px", "Playground", fullPage: false);
        await page.SetViewportSizeAsync(1280, 800);

        var now = DateTimeOffset.UtcNow;
        var tenantId = Guid.Empty;
        await Loom.WithDatabaseAsync(async services =>
        {
            var db = services.GetRequiredService<PlatformDbContext>();
            tenantId = await db.Tenants.Where(t => t.Name == LoomServerFixture.TenantName).Select(t => t.Id).SingleAsync();
        });
        var random = new Random(14);
        await Loom.AddUsageAsync(tenantId, Enumerable.Range(1, 28).SelectMany(d => new[]
        {
            (LoomServerFixture.ModelName, now.AddDays(-d), random.Next(2_000, 9_000), random.Next(1_000, 6_000)),
            (adapter, now.AddDays(-d), random.Next(500, 4_000), random.Next(300, 3_000)),
        }).ToArray());
        await page.GotoAsync("/usage");
        await page.WaitForFunctionAsync("() => window.Chart && Chart.getChart('usage-daily')");
        await Shot(page, "usage", "Usage");

        await page.GotoAsync("/keys");
        await Shot(page, "keys", "API keys");
        await page.GotoAsync("/admin/tenants");
        await Shot(page, "admin-tenants", "Tenants");
        await page.GotoAsync("/admin/users");
        await Shot(page, "admin-users", "Users");
        await page.GotoAsync("/admin/engine");
        await Expect(page.GetByTestId("pool-total")).ToBeVisibleAsync();
        await page.WaitForTimeoutAsync(3000); // a few seconds of the engine's time series
        await Shot(page, "admin-engine", "Inference engine");
    }

    private static async Task Shot(IPage page, string name, string heading, bool fullPage = true)
    {
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(heading);
        await page.ScreenshotAsync(new() { Path = Path.Combine(Folder, $"{name}.png"), FullPage = fullPage });
    }
}
