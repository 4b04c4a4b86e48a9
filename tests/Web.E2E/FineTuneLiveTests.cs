using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>
/// The fine-tune page's own connection to the JobsHub (@microsoft/signalr in the browser, authenticated by the portal
/// cookie): events published to the job's stream show up without a reload; after the connection is cut and comes
/// back, the page asks for what it missed and shows every event once, in order; another tenant's user can neither
/// open the job nor subscribe to it from the browser. Events are published by the test through Loom's publisher on a
/// job that no run trains, so the page sees exactly the test's events.
/// </summary>
public sealed class FineTuneLiveTests(LoomServerFixture loom) : PortalTest(loom)
{
    private const int TotalSteps = 20;

    private static double Loss(int step) => 3.0 / (1 + step * 0.25);

    private Task<long> PublishStepAsync(Guid tenant, string job, int step) =>
        Loom.PublishJobEventAsync(tenant, job, "metrics", new Dictionary<string, object?>
        {
            ["message"] = $"Step {step}/{TotalSteps}: training loss={Loss(step):F4}",
            ["level"] = "info",
            ["data"] = new Dictionary<string, object?>
            {
                ["step"] = step, ["total_steps"] = TotalSteps, ["epoch"] = 1, ["train_loss"] = Loss(step),
                ["valid_loss"] = step % 2 == 0 ? Loss(step) + 0.1 : null, ["learning_rate"] = 1e-4, ["tokens_per_second"] = 1000.0 + step,
                ["trained_tokens"] = step * 100,
            },
        });

    /// <summary>A tenant of the test's own with one user, signed in on a fresh page (its jobs are its own).</summary>
    private async Task<(Guid Tenant, IPage Page)> TenantPageAsync(string label, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        var name = $"{label}-{Guid.NewGuid():N}"[..20];
        var tenant = await Loom.CreateTenantUserAsync(name, name, Password);
        var page = await OpenAsync(test);
        await SignInAsync(page, Password, name);
        await Expect(page.GetByTestId("current-user")).ToHaveTextAsync(name);
        return (tenant, page);
    }

    private const string Password = "Live-events-pw-1";

    private static Task<string[]> ShownSeqsAsync(IPage page) =>
        page.Locator("[data-testid=event-log] li").EvaluateAllAsync<string[]>("items => items.map(i => i.dataset.seq)");

    private static Task WaitForChartPointsAsync(IPage page, int n) =>
        page.WaitForFunctionAsync($"() => Chart.getChart('ft-loss')?.data.datasets[0].data.length === {n}");

    [Fact]
    public async Task EventsArriveLiveWithoutAReload()
    {
        var (tenant, page) = await TenantPageAsync("live");
        var job = await Loom.AddRunningFineTuneAsync(tenant, TotalSteps);
        await page.GotoAsync($"/fine-tunes/{job}");
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Live");
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("running");
        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("0");
        await page.EvaluateAsync("() => window.__sameDocument = true");

        for (var step = 1; step <= 4; step++) await PublishStepAsync(tenant, job, step);

        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("4");
        await Expect(page.GetByTestId("step")).ToHaveTextAsync($"4 / {TotalSteps}");
        await Expect(page.GetByTestId("train-loss")).ToHaveTextAsync(Loss(4).ToString("0.0000", CultureInfo.InvariantCulture));
        await Expect(page.GetByTestId("valid-loss")).ToHaveTextAsync((Loss(4) + 0.1).ToString("0.0000", CultureInfo.InvariantCulture));
        await Expect(page.GetByTestId("tokens-per-second")).ToHaveTextAsync("1,004");
        await Expect(page.GetByLabel("Training progress")).ToHaveAttributeAsync("value", "4");
        await Expect(page.GetByTestId("progress-text")).ToHaveTextAsync(new Regex("^20%"));
        await WaitForChartPointsAsync(page, 4);
        Assert.Equal(2, await page.EvaluateAsync<int>("() => Chart.getChart('ft-loss').data.datasets[1].data.length"));
        Assert.Equal(["4", "3", "2", "1"], await ShownSeqsAsync(page));
        Assert.True(await page.EvaluateAsync<bool>("() => window.__sameDocument === true"), "the page reloaded");
        await AssertLayoutAndLabelsAsync(page);
    }

    [Fact]
    public async Task AfterTheConnectionDropsThePageCatchesUpWithoutGapsOrRepeats()
    {
        var (tenant, page) = await TenantPageAsync("drop");
        var job = await Loom.AddRunningFineTuneAsync(tenant, TotalSteps);
        // While "offline" the client's reconnect attempts fail on purpose.
        Allow(new Regex(@"request failed: POST .*/hubs/jobs/negotiate"));
        Allow(new Regex(@"console error: Failed to load resource: net::ERR_FAILED"));

        // The hub's traffic goes through Playwright, so the test can cut it like a network drop.
        var offline = false;
        var sockets = new List<IWebSocketRoute>();
        await page.RouteWebSocketAsync(new Regex("/hubs/jobs"), socket =>
        {
            if (Volatile.Read(ref offline))
            {
                _ = socket.CloseAsync();
                return;
            }
            lock (sockets) sockets.Add(socket);
            socket.ConnectToServer();
        });
        await page.RouteAsync(new Regex("/hubs/jobs/negotiate"), route => Volatile.Read(ref offline) ? route.AbortAsync() : route.ContinueAsync());

        await page.GotoAsync($"/fine-tunes/{job}");
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Live");
        for (var step = 1; step <= 3; step++) await PublishStepAsync(tenant, job, step);
        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("3");

        Volatile.Write(ref offline, true);
        IWebSocketRoute[] open;
        lock (sockets) open = [.. sockets];
        Assert.NotEmpty(open);
        foreach (var socket in open) await socket.CloseAsync();
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Reconnecting…");

        // Published while the page is cut off: no push can reach it.
        for (var step = 4; step <= 8; step++) await PublishStepAsync(tenant, job, step);
        await page.WaitForTimeoutAsync(500);
        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("3");

        Volatile.Write(ref offline, false);
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Live");
        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("8");
        Assert.Equal(["8", "7", "6", "5", "4", "3", "2", "1"], await ShownSeqsAsync(page));
        await WaitForChartPointsAsync(page, 8);
        Assert.Equal(8, await page.EvaluateAsync<int>($"() => window.loomJobFeeds.get('{job}').lastSeq"));

        // And the new connection is live.
        await PublishStepAsync(tenant, job, 9);
        await Expect(page.GetByTestId("event-count")).ToHaveTextAsync("9");
        await Expect(page.GetByTestId("step")).ToHaveTextAsync($"9 / {TotalSteps}");
        Assert.Equal(Enumerable.Range(1, 9).Reverse().Select(i => i.ToString()).ToArray(), await ShownSeqsAsync(page));
    }

    [Fact]
    public async Task AnotherTenantsUserCanNeitherOpenNorSubscribeToTheJob()
    {
        var (tenant, owner) = await TenantPageAsync("owner");
        var job = await Loom.AddRunningFineTuneAsync(tenant, TotalSteps);
        await PublishStepAsync(tenant, job, 1);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        await Loom.CreateTenantUserAsync($"other-{suffix}", $"other-{suffix}", "Other-tenant-pw-1");

        await owner.GotoAsync($"/fine-tunes/{job}");
        await Expect(owner.GetByTestId("live")).ToHaveTextAsync("Live");
        await Expect(owner.GetByTestId("event-count")).ToHaveTextAsync("1");

        var other = await OpenAsync();
        await SignInAsync(other, "Other-tenant-pw-1", $"other-{suffix}");
        await Expect(other.GetByTestId("current-user")).ToHaveTextAsync($"other-{suffix}");
        await other.GotoAsync($"/fine-tunes/{job}");
        await Expect(other.GetByTestId("not-found")).ToBeVisibleAsync();
        Assert.Equal(0, await other.EvaluateAsync<int>("() => window.loomJobFeeds?.size ?? 0"));
        await other.GotoAsync("/fine-tunes");
        await Expect(other.GetByText("No fine-tunes yet.")).ToBeVisibleAsync();

        // From the other tenant's browser, straight to the hub with its cookie: the backlog is empty and pushes never come.
        var backlog = await other.EvaluateAsync<int>("""
            async job => {
                const c = new signalR.HubConnectionBuilder().withUrl('/hubs/jobs').build();
                window.__leaked = [];
                c.on('jobEvent', e => window.__leaked.push(e));
                await c.start();
                const batch = await c.invoke('Subscribe', job, 0);
                await c.invoke('SubscribeTenant');
                window.__otherConnection = c;
                return batch.events.length;
            }
            """, job);
        Assert.Equal(0, backlog);

        await PublishStepAsync(tenant, job, 2);
        await Expect(owner.GetByTestId("event-count")).ToHaveTextAsync("2");
        await other.WaitForTimeoutAsync(500);
        Assert.Equal(0, await other.EvaluateAsync<int>("() => window.__leaked.length"));
        await other.EvaluateAsync("() => window.__otherConnection.stop()");
    }
}
