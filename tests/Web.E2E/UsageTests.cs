using System.Text.Json;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Usage: totals, a per-model table and two Chart.js charts over a date range; playground chats count.</summary>
public sealed class UsageTests(LoomServerFixture loom) : PortalTest(loom)
{
    private static DateTimeOffset Day(int month, int day, int hour = 12) => new(2026, month, day, hour, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task TotalsTableAndChartsFollowTheDateRange()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (user, password) = ($"dora-{suffix}", "Usage-user-pw-1");
        var tenant = await Loom.CreateTenantUserAsync($"usage-{suffix}", user, password);
        await Loom.AddUsageAsync(tenant,
            ("alpha", Day(1, 10), 100, 50), ("alpha", Day(1, 12), 10, 5), ("beta", Day(1, 12, 23), 200, 100),
            ("beta", Day(1, 13, 0), 7, 7), ("alpha", Day(1, 9, 23), 1000, 1000));

        var page = await OpenAsync();
        await SignInAsync(page, password, user);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Usage" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Usage");
        await Expect(page.GetByTestId("no-usage")).ToBeVisibleAsync(); // the last 30 days hold nothing
        await Expect(page.GetByLabel("From", new() { Exact = true })).ToBeEnabledAsync();

        await page.GetByLabel("From", new() { Exact = true }).FillAsync("2026-01-10");
        await page.GetByLabel("To", new() { Exact = true }).FillAsync("2026-01-12");
        await page.GetByRole(AriaRole.Button, new() { Name = "Show" }).ClickAsync();
        await Expect(page.GetByTestId("total-requests")).ToHaveTextAsync("3");
        await Expect(page.GetByTestId("total-prompt")).ToHaveTextAsync("310");
        await Expect(page.GetByTestId("total-completion")).ToHaveTextAsync("155");
        await Expect(page.GetByTestId("total-tokens")).ToHaveTextAsync("465");
        var rows = page.GetByTestId("models-table").Locator("tbody tr");
        await Expect(rows).ToHaveCountAsync(2);
        await Expect(rows.Nth(0)).ToHaveTextAsync("beta1200100300");
        await Expect(rows.Nth(1)).ToHaveTextAsync("alpha211055165");

        // The charts hold the same figures: a stacked bar per day and model, and per model.
        await page.WaitForFunctionAsync("() => window.Chart && Chart.getChart('usage-daily') && Chart.getChart('usage-models')");
        var daily = await page.EvaluateAsync<JsonElement>("() => { const c = Chart.getChart('usage-daily'); return { labels: c.data.labels, sets: c.data.datasets.map(d => ({ label: d.label, data: d.data })) }; }");
        Assert.Equal(["2026-01-10", "2026-01-11", "2026-01-12"], daily.GetProperty("labels").EnumerateArray().Select(l => l.GetString()!).ToArray());
        var sets = daily.GetProperty("sets").EnumerateArray().ToDictionary(s => s.GetProperty("label").GetString()!, s => s.GetProperty("data").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        Assert.Equal([150L, 0, 15], sets["alpha"]);
        Assert.Equal([0L, 0, 300], sets["beta"]);
        Assert.Equal(["beta", "alpha"], await page.EvaluateAsync<string[]>("() => Chart.getChart('usage-models').data.labels"));
        await AssertLayoutAndLabelsAsync(page);

        // A bad range is refused next to its field; the figures stay as they were.
        await page.GetByLabel("From", new() { Exact = true }).FillAsync("2026-02-01");
        await page.GetByRole(AriaRole.Button, new() { Name = "Show" }).ClickAsync();
        await Expect(page.Locator("#usage-from-error")).ToHaveTextAsync("“From” must not be after “To”.");
        await Expect(page.GetByTestId("total-tokens")).ToHaveTextAsync("465");

        // The demo tenant sees none of it.
        var admin = await OpenAsync();
        await SignInAsync(admin);
        await admin.GotoAsync("/usage");
        await Expect(admin.GetByLabel("From", new() { Exact = true })).ToBeEnabledAsync();
        await admin.GetByLabel("From", new() { Exact = true }).FillAsync("2026-01-10");
        await admin.GetByLabel("To", new() { Exact = true }).FillAsync("2026-01-12");
        await admin.GetByRole(AriaRole.Button, new() { Name = "Show" }).ClickAsync();
        await Expect(admin.GetByTestId("no-usage")).ToBeVisibleAsync();
        await Expect(admin.GetByTestId("total-requests")).ToHaveTextAsync("0");
    }

    [Fact]
    public async Task APlaygroundChatIsCountedAsTheTenantsUsage()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (user, password) = ($"eve-{suffix}", "Usage-user-pw-2");
        await Loom.CreateTenantUserAsync($"chatty-{suffix}", user, password);
        var page = await OpenAsync();
        await SignInAsync(page, password, user);
        await page.GotoAsync("/playground");
        await page.GetByLabel("Max tokens").FillAsync("4");
        await page.GetByLabel("Message").FillAsync("count me");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("^Done"));
        var completion = await page.GetByTestId("token-count").TextContentAsync();

        await page.GotoAsync("/usage");
        await Expect(page.GetByTestId("total-requests")).ToHaveTextAsync("1");
        await Expect(page.GetByTestId("total-completion")).ToHaveTextAsync(completion!);
        await Expect(page.GetByTestId("models-table").Locator("tbody th")).ToHaveTextAsync(LoomServerFixture.ModelName);
    }
}
