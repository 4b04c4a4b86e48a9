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
            await SetFilesAsync(page.GetByLabel("Files"), new[] { "adapter_config.json", "adapter_model.safetensors" }.Select(f => Path.Combine(LoomServerFixture.GoldenAdapterDirectory, f)));
            await page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" }).ClickAsync();
            await Expect(page.GetByTestId("upload-done")).ToBeVisibleAsync();
        }
        await Shot(page, "adapters", "Adapters");
        await page.GotoAsync($"/adapters/{adapter}");
        await Shot(page, "adapter-detail", adapter);

        await page.GotoAsync("/files");
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload file" })).ToBeEnabledAsync();
        var lines = Enumerable.Range(1, 40).Select(i => $$"""{"messages":[{"role":"user","content":"word {{i}}?"},{"role":"assistant","content":"gloss {{i}}"}]}""");
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = "glossary-train.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Valid.");
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = "glossary-bad.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", lines.Take(6)) + "\n{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Line 7:");
        await Shot(page, "files", "Files");
        var valid = Enumerable.Range(41, 8).Select(i => $$"""{"messages":[{"role":"user","content":"word {{i}}?"},{"role":"assistant","content":"gloss {{i}}"}]}""");
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = "glossary-valid.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", valid) + "\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Valid.");

        // A fine-tune on the glossary, trained by the jobs tier while the page follows it.
        await page.GotoAsync("/fine-tunes/new");
        var start = page.GetByRole(AriaRole.Button, new() { Name = "Start fine-tune" });
        await Expect(start).ToBeEnabledAsync();
        await page.GetByLabel("Model to start from").SelectOptionAsync(LoomServerFixture.ModelName);
        foreach (var (label, file) in new[] { ("Training file", "glossary-train.jsonl"), ("Validation file", "glossary-valid.jsonl") })
        {
            var select = page.GetByLabel(label);
            await select.SelectOptionAsync((await select.Locator("option", new() { HasText = file }).First.GetAttributeAsync("value"))!);
        }
        await page.GetByLabel("Epochs").FillAsync("3");
        await page.GetByLabel("Learning-rate multiplier").FillAsync("20");
        await page.GetByLabel("Rank").FillAsync("8");
        await page.GetByLabel("Alpha").FillAsync("16");
        await page.GetByLabel("Suffix").FillAsync("glossary");
        await page.GetByLabel("Seed").FillAsync("14");
        await Shot(page, "fine-tune-new", "New fine-tune");
        await start.ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("succeeded", new() { Timeout = 120_000 });
        await page.WaitForFunctionAsync("() => Chart.getChart('ft-loss')?.data.datasets[0].data.length === 120");
        await Shot(page, "fine-tune-detail", new System.Text.RegularExpressions.Regex("^ftjob-"));
        await page.SetViewportSizeAsync(390, 844);
        await Shot(page, "fine-tune-detail-390px", new System.Text.RegularExpressions.Regex("^ftjob-"), fullPage: false);
        await page.SetViewportSizeAsync(1280, 800);
        await page.GotoAsync("/fine-tunes");
        await Shot(page, "fine-tunes", "Fine-tunes");

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
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Create invitation link" })).ToBeEnabledAsync();
        await page.GetByLabel("Email address").FillAsync("new.colleague@example.com");
        await page.Locator("#invite-tenant").SelectOptionAsync(new SelectOptionValue { Label = LoomServerFixture.TenantName });
        await page.GetByRole(AriaRole.Button, new() { Name = "Create invitation link" }).ClickAsync();
        await Expect(page.GetByTestId("invite-link")).ToBeVisibleAsync();
        await Shot(page, "admin-users", "Users");
        var invitation = (await page.GetByTestId("invite-link").TextContentAsync())!.Trim();
        var guest = await Loom.NewContextAsync();
        var guestPage = await guest.NewPageAsync();
        await guestPage.GotoAsync(invitation);
        await Expect(guestPage.GetByRole(AriaRole.Button, new() { Name = "Set password" })).ToBeEnabledAsync();
        await Shot(guestPage, "invitation", "Accept invitation");
        await guest.CloseAsync();
        await page.GotoAsync("/admin/engine");
        await Expect(page.GetByTestId("pool-total")).ToBeVisibleAsync();
        await page.WaitForTimeoutAsync(3000); // a few seconds of the engine's time series
        await Shot(page, "admin-engine", "Inference engine");
    }

    private static Task Shot(IPage page, string name, string heading, bool fullPage = true) =>
        Shot(page, name, new System.Text.RegularExpressions.Regex($"^{System.Text.RegularExpressions.Regex.Escape(heading)}$"), fullPage);

    private static async Task Shot(IPage page, string name, System.Text.RegularExpressions.Regex heading, bool fullPage = true)
    {
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(heading);
        await page.ScreenshotAsync(new() { Path = Path.Combine(Folder, $"{name}.png"), FullPage = fullPage });
    }
}
