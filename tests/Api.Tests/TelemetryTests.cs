using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.RegularExpressions;

namespace Loom.Api.Tests;

/// <summary>The tiny chat model, under a name of its own, with a Prometheus scrape token. Meters are matched by name
/// across the process, so this host's scrape also shows the engines of other test hosts running beside it; the
/// model name tells its own series apart.</summary>
public sealed class TelemetryChatModelFactory : ChatModelFactory
{
    public const string ScrapeToken = "scrape-token-for-tests";
    public const string Model = "otel-chat";

    protected override string CreateModelDir() =>
        Loom.Tests.Shared.GoldenChatModel.CreateIn(Path.Combine(Path.GetTempPath(), $"loom-model-{Guid.NewGuid():N}", Model), GoldenModel);

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        base.Settings.Append(new("Loom:Telemetry:ScrapeToken", ScrapeToken));
}

/// <summary>Runs alone, after the test classes that run side by side: meters are matched by name across the process, and
/// with other test hosts' engines alive beside it this host's engine series were sometimes missing from its scrape.</summary>
[CollectionDefinition(nameof(TelemetryTests), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>The Prometheus scrape endpoint: the engine's own series move with the traffic, ASP.NET Core's are there too,
/// and a scrape without the token gets nothing.</summary>
[Collection(nameof(TelemetryTests))]
public partial class TelemetryTests(TelemetryChatModelFactory factory) : IClassFixture<TelemetryChatModelFactory>
{
    [Fact]
    public async Task EngineSeriesFollowTheTrafficAndTheEndpointNeedsItsToken()
    {
        var tenant = await factory.CreateTenantAsync($"otel-{Guid.NewGuid():N}"[..12]);
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);

        var before = await ScrapeAsync();
        var chat = await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = TelemetryChatModelFactory.Model, max_tokens = 5, temperature = 0,
            messages = new[] { new { role = "user", content = "hello" } },
        });
        Assert.True(chat.IsSuccessStatusCode, await chat.Content.ReadAsStringAsync());
        // Observable instruments are read at scrape time; the exporter caches a scrape for a short while.
        string after = before;
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            after = await ScrapeAsync();
            if (Value(after, "loom_engine_requests_total", "outcome=\"finished\"") > Value(before, "loom_engine_requests_total", "outcome=\"finished\"")
                && after.Contains("http_server_request_duration_seconds", StringComparison.Ordinal)) break;
        }
        Assert.Equal(Value(before, "loom_engine_requests_total", "outcome=\"finished\"") + 1, Value(after, "loom_engine_requests_total", "outcome=\"finished\""));
        Assert.True(Value(after, "loom_engine_tokens_generated_total") >= Value(before, "loom_engine_tokens_generated_total") + 5, after);
        Assert.True(Value(after, "loom_engine_pool_pages", "owner=\"free\"") > 0, after);
        Assert.Contains("http_server_request_duration_seconds", after);

        using var anonymous = factory.CreateClient();
        Assert.Equal(HttpStatusCode.NotFound, (await anonymous.GetAsync("/metrics")).StatusCode);
        using var wrong = factory.CreateClient();
        wrong.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not-the-token");
        Assert.Equal(HttpStatusCode.NotFound, (await wrong.GetAsync("/metrics")).StatusCode);
    }

    private async Task<string> ScrapeAsync()
    {
        using var http = factory.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TelemetryChatModelFactory.ScrapeToken);
        var response = await http.GetAsync("/metrics");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return text;
    }

    /// <summary>The value of this host's sample of <paramref name="metric"/> (its model) whose labels contain
    /// <paramref name="label"/> (0 when there is none yet).</summary>
    private static double Value(string exposition, string metric, string label = "")
    {
        foreach (Match m in Sample().Matches(exposition))
            if (m.Groups["name"].Value == metric && m.Groups["labels"].Value.Contains(label, StringComparison.Ordinal)
                && m.Groups["labels"].Value.Contains($"model=\"{TelemetryChatModelFactory.Model}\"", StringComparison.Ordinal))
                return double.Parse(m.Groups["value"].Value, System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>[-+0-9.eE]+|NaN)", RegexOptions.Multiline)]
    private static partial Regex Sample();
}
