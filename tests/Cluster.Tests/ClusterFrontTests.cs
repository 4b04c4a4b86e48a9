using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Loom.Cluster.Tests;

/// <summary>
/// The cluster's HTTP tier as real processes: the YARP front spreads requests over both API+web nodes and routes around
/// one killed with SIGKILL; a tenant's requests-per-minute limit holds across both nodes through Redis (the limit, not
/// twice it); a portal sign-in on one web node is accepted by the other (one key ring in PostgreSQL).
/// </summary>
[Collection(LoopbackCluster.Collection)]
public sealed class ClusterFrontTests(LoopbackCluster cluster, ITestOutputHelper output)
{
    private const string ModelsRoute = "http_server_request_duration_seconds_count";

    private HttpClient FrontClient()
    {
        // No cookies: API clients are spread, not pinned to a node.
        var http = new HttpClient(new HttpClientHandler { UseCookies = false }) { BaseAddress = cluster.Front.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = cluster.Client.DefaultRequestHeaders.Authorization;
        return http;
    }

    private static Task<double> ModelsServedAsync(NodeProcess node) =>
        LoopbackCluster.MetricAsync(node, ModelsRoute, "v1/models\"");

    /// <summary>The node's count once it reaches <paramref name="expected"/> (or what it shows after 5 s): the scrape
    /// answers fresh (no response cache on the tests' nodes), but ASP.NET Core records a request's duration once its
    /// response is complete, which can be just after the client has read it.</summary>
    private static async Task<double> ModelsServedAsync(NodeProcess node, double expected)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            var served = await ModelsServedAsync(node);
            if (served >= expected || waited.Elapsed > TimeSpan.FromSeconds(5)) return served;
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task TheFrontSpreadsRequestsAndRoutesAroundAKilledApiNode()
    {
        using var http = FrontClient();
        var (oneBefore, twoBefore) = (await ModelsServedAsync(cluster.Api), await ModelsServedAsync(cluster.Api2));
        for (var i = 0; i < 40; i++)
        {
            using var r = await http.GetAsync("/v1/models");
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"{(int)r.StatusCode}: {await r.Content.ReadAsStringAsync()}");
        }
        double one, two;
        var counting = Stopwatch.StartNew();
        do
        {
            if (counting.ElapsedMilliseconds > 0) await Task.Delay(100); // counts can trail the answers briefly (see ModelsServedAsync)
            (one, two) = (await ModelsServedAsync(cluster.Api) - oneBefore, await ModelsServedAsync(cluster.Api2) - twoBefore);
        } while (one + two < 40 && counting.Elapsed < TimeSpan.FromSeconds(5));
        output.WriteLine($"40 requests through the front: api-1 served {one}, api-2 {two}");
        Assert.Equal(40, one + two);
        Assert.True(one >= 8 && two >= 8, $"the front did not spread the requests (api-1 {one}, api-2 {two})");

        // kill -9 of api-2 with requests in flight on it (their bodies held back): they fail, so the front's passive
        // check takes api-2 out as well as its active check. Within a few seconds every request succeeds on api-1.
        var port = cluster.Api2.BaseAddress.Port;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = Enumerable.Range(0, 40).Select(_ => HeldRequestAsync(http, gate.Task)).ToList();
        await Task.Delay(1500); // the front has sent them on to both nodes
        cluster.Api2.KillHard();
        await Task.Delay(500);
        gate.SetResult();
        var inFlight = await Task.WhenAll(held);
        Assert.All(inFlight, s => Assert.True(s is null or HttpStatusCode.OK or HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable, $"unexpected {(int?)s}"));
        var (failed, consecutive) = (inFlight.Count(s => s != HttpStatusCode.OK), 0);
        output.WriteLine($"40 requests in flight through the front when api-2 was killed: {failed} failed");
        var sinceKill = Stopwatch.StartNew(); // the requests in flight took a while: counted from here
        while (consecutive < 20)
        {
            Assert.True(sinceKill.Elapsed < TimeSpan.FromSeconds(15), $"the front still sent requests to the dead node 15 s after the requests in flight ended ({failed} failed)");
            using var r = await http.GetAsync("/v1/models");
            if (r.StatusCode == HttpStatusCode.OK) consecutive++;
            else
            {
                Assert.True(r.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable, $"unexpected {(int)r.StatusCode}");
                (failed, consecutive) = (failed + 1, 0);
            }
        }
        var routedAround = sinceKill.Elapsed;
        var oneAfterKill = await ModelsServedAsync(cluster.Api);
        for (var i = 0; i < 30; i++)
        {
            using var r = await http.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        Assert.Equal(oneAfterKill + 30, await ModelsServedAsync(cluster.Api, oneAfterKill + 30));
        output.WriteLine($"after kill -9 of api-2: {failed} requests failed (502) before the front routed around it; 20 in a row succeeded " +
                         $"{routedAround.TotalMilliseconds:F0} ms after the requests in flight ended; the next 30 all went to api-1 and succeeded");

        // api-2 back on its port: its /readyz brings it back at once for the active check, and the passive check lets
        // it back after Front:Reactivation (5 s). YARP holds a node the passive check took out for its failure window
        // when that is longer (60 s by default); the front sets the window to the reactivation period.
        await cluster.StartApi2Async(port);
        var back = Stopwatch.StartNew();
        var twoBack = await ModelsServedAsync(cluster.Api2);
        while (await ModelsServedAsync(cluster.Api2) == twoBack)
        {
            Assert.True(back.Elapsed < TimeSpan.FromSeconds(30), $"the front sent no request to the restarted api-2 within 30 s of it being ready");
            using var r = await http.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            await Task.Delay(50);
        }
        output.WriteLine($"restarted api-2 received requests {back.ElapsedMilliseconds} ms after it was ready");
    }

    /// <summary>A chat completion through the front whose body stops half-way until <paramref name="gate"/> opens; its
    /// status, or null when the front dropped the connection (the node it went to was killed).</summary>
    private static async Task<HttpStatusCode?> HeldRequestAsync(HttpClient http, Task gate)
    {
        var body = await LoopbackCluster.Chat(LoopbackCluster.ModelName, maxTokens: 1).ReadAsByteArrayAsync();
        using var content = new HeldContent(body, gate);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        try
        {
            using var r = await http.PostAsync("/v1/chat/completions", content);
            return r.StatusCode;
        }
        catch (HttpRequestException) { return null; }
    }

    private sealed class HeldContent(byte[] body, Task gate) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(body.AsMemory(0, body.Length / 2));
            await stream.FlushAsync();
            await gate;
            await stream.WriteAsync(body.AsMemory(body.Length / 2));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = body.Length;
            return true;
        }
    }

    [Fact]
    public async Task ATenantsRequestLimitHoldsAcrossBothApiNodes()
    {
        const int limit = 10;
        var secret = await CreateTenantKeyAsync($"rpm-{Guid.NewGuid():N}"[..12], limit);
        // A key's first request on a node reads the database and opens its Redis connection: slow on a loaded machine.
        using var one = new HttpClient { BaseAddress = cluster.Api.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        using var two = new HttpClient { BaseAddress = cluster.Api2.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        foreach (var c in new[] { one, two }) c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 2 * limit; i++)
        {
            using var r = await (i % 2 == 0 ? one : two).GetAsync("/v1/models");
            statuses.Add(r.StatusCode);
            if (r.StatusCode == HttpStatusCode.TooManyRequests)
                Assert.True(r.Headers.RetryAfter is not null, "a 429 without Retry-After");
        }
        output.WriteLine($"{2 * limit} requests alternating over api-1 and api-2 with a limit of {limit}/min: " +
                         $"{statuses.Count(s => s == HttpStatusCode.OK)} x 200, {statuses.Count(s => s == HttpStatusCode.TooManyRequests)} x 429");
        Assert.Equal(limit, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(limit, statuses.Count(s => s == HttpStatusCode.TooManyRequests));
        // Both nodes refused: the budget is one, not one per node.
        Assert.Equal(HttpStatusCode.TooManyRequests, (await one.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await two.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task ASignInOnOneWebNodeIsAcceptedByTheOther()
    {
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { Timeout = TimeSpan.FromSeconds(30) };
        var one = cluster.Api.BaseAddress;
        var two = cluster.Api2.BaseAddress;

        // Signed out, the usage page sends the browser to the sign-in page on either node.
        using (var anonymous = await http.GetAsync(new Uri(two, "/usage")))
            Assert.Equal(HttpStatusCode.Redirect, anonymous.StatusCode);

        var cookie = await PortalSignIn.AdminCookieAsync(http, one);

        foreach (var node in new[] { one, two })
        {
            using var page = new HttpRequestMessage(HttpMethod.Get, new Uri(node, "/usage"));
            page.Headers.Add("Cookie", cookie);
            using var response = await http.SendAsync(page);
            output.WriteLine($"/usage on {node} with the cookie api-1 issued: {(int)response.StatusCode}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    /// <summary>A tenant with its own requests-per-minute limit and an API key of it, written to the cluster's database.</summary>
    private async Task<string> CreateTenantKeyAsync(string name, int requestsPerMinute)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:Loom"] = cluster.ConnectionString }).Build();
        var services = new ServiceCollection().AddLogging().AddData(configuration);
        await using var provider = services.BuildServiceProvider();
        await using var scope = provider.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var tenant = new Tenant { Id = Guid.NewGuid(), Name = name, RequestsPerMinute = requestsPerMinute, CreatedAt = DateTimeOffset.UtcNow };
        db.Tenants.Add(tenant);
        await db.SaveChangesAsync();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenant.Id;
        return (await scope.ServiceProvider.GetRequiredService<Loom.Data.Keys.ApiKeyService>().CreateAsync(tenant.Id, "cluster test")).Secret;
    }
}
