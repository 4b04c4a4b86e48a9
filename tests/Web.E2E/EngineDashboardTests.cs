using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The admin engine page: the page pool, the batch and the per-tenant counters of this node's engine, pushed
/// to the browser over the Blazor circuit while requests are served; administrators only.</summary>
public sealed class EngineDashboardTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task AnAdministratorWatchesTheEngineServeAChatCompletionLive()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Link, new() { Name = "Engine", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Inference engine" })).ToBeVisibleAsync();
        await Expect(page.GetByTestId("policy")).ToHaveTextAsync("Vtc");
        int total = int.Parse(await page.GetByTestId("pool-total").TextContentAsync() ?? "0");
        Assert.True(total > 0, "the pool has no pages");
        await Expect(page.GetByRole(AriaRole.Img, new() { NameRegex = new("^KV cache .* of \\d+ pages$") })).ToBeVisibleAsync();

        // Other tests' completions (same tenant, same server) count too: compare with the figures before.
        var row = page.GetByTestId("tenant-row").Filter(new() { HasText = LoomServerFixture.TenantName });
        var outputBefore = await row.CountAsync() == 1 ? Count(await row.GetByTestId("tenant-output").TextContentAsync()) : 0;

        // a chat completion through the API, with the demo tenant's key: the page shows it without a reload
        using var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Loom.DemoApiKey);
        var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = LoomServerFixture.ModelName,
            messages = new[] { new { role = "user", content = "hello" } },
            max_tokens = 5,
            ignore_eos = true,
        });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());

        await Expect(row).ToHaveCountAsync(1);
        // at least this completion's 5 tokens more than before, shown without a reload (other test classes may serve the
        // same tenant at the same time, so the count can also grow by more)
        var waited = System.Diagnostics.Stopwatch.StartNew();
        long shown;
        while ((shown = Count(await row.GetByTestId("tenant-output").TextContentAsync())) < outputBefore + 5)
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(20), $"the page shows {shown} output tokens for the tenant, expected at least {outputBefore + 5}");
            await Task.Delay(200);
        }
        await Expect(page.GetByTestId("tokens-generated")).Not.ToHaveTextAsync("0");
        Assert.True(Count(await row.GetByTestId("tenant-input").TextContentAsync()) > 0);

        // The time series, sampled once a second: every sample's pool pages add up to the pool, and the tenant that
        // was just served has a counter line.
        await page.WaitForFunctionAsync($$"""
            () => window.Chart && Chart.getChart('engine-batch') && Chart.getChart('engine-pool')?.data.labels.length >= 2
                  && Chart.getChart('engine-tenants')?.data.datasets.some(d => d.label === '{{LoomServerFixture.TenantName}}')
            """);
        var sums = await page.EvaluateAsync<long[]>("""
            () => { const sets = Chart.getChart('engine-pool').data.datasets; return sets[0].data.map((_, i) => sets.reduce((a, d) => a + d.data[i], 0)); }
            """);
        Assert.All(sums, s => Assert.Equal((long)total, s));
        // the legend's pages by use (KV, adapters, training, cached prefixes, free) add up to the pool too, read from one render
        var legend = await page.EvaluateAsync<long[]>("""
            () => ['pool-kv', 'pool-adapters', 'pool-training', 'pool-cached', 'pool-free']
                .map(id => Number(document.querySelector(`[data-testid="${id}"]`).textContent.replace(/,/g, '')))
            """);
        Assert.Equal((long)total, legend.Sum());
        Assert.Equal(["KV cache", "adapters", "training", "cached prefixes", "free"], await page.EvaluateAsync<string[]>("() => Chart.getChart('engine-pool').data.datasets.map(d => d.label)"));
        Assert.Equal(["batch size", "running", "queue length"], await page.EvaluateAsync<string[]>("() => Chart.getChart('engine-batch').data.datasets.map(d => d.label)"));
        var counter = await page.EvaluateAsync<double>($"() => Chart.getChart('engine-tenants').data.datasets.find(d => d.label === '{LoomServerFixture.TenantName}').data.at(-1)");
        Assert.True(counter > 0, "the served tenant's counter line is flat at zero");
        await AssertLayoutAndLabelsAsync(page);
    }

    /// <summary>A counter as the page shows it ("N0": thousands separated).</summary>
    private static long Count(string? text) => long.Parse(text ?? "0", NumberStyles.AllowThousands, CultureInfo.InvariantCulture);

    [Fact]
    public async Task OtherUsersAreNotAllowedAndSeeNoLink()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (tenant, user, password) = ($"plain-{suffix}", $"carol-{suffix}", "Plain-user-pw-1");
        await Loom.CreateTenantUserAsync(tenant, user, password);
        var page = await OpenAsync();
        await SignInAsync(page, password, user);
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(tenant);
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Engine", Exact = true })).ToHaveCountAsync(0);
        await page.GotoAsync("/admin/engine");
        await Expect(page.GetByTestId("not-allowed")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("pool-total")).ToHaveCountAsync(0);
    }
}
