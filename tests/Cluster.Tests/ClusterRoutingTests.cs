using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Loom.Cluster.Routing;
using Xunit.Abstractions;

namespace Loom.Cluster.Tests;

/// <summary>
/// Real processes on loopback: an API node without an engine reaches two inference nodes over gRPC. Adapters' requests
/// land where (base model, adapter) hashes, so each adapter is registered on one node only; a client that goes away
/// stops the remote generation; a node killed mid-stream ends its stream with a retryable error within 2 s and the
/// next requests succeed on the live nodes, with usage recorded once per request.
/// </summary>
[Collection(LoopbackCluster.Collection)]
public class ClusterRoutingTests(LoopbackCluster cluster, ITestOutputHelper output)
{
    private const int Adapters = 200;
    private const int RequestsPerAdapter = 2;

    [Fact]
    public async Task AdaptersOfTwoBaseModelsSpreadOverTheNodesServingThemAndStayWhereTheyHash()
    {
        // Three in four adapters on tiny-chat (served by inf-a and inf-b), one in four on twin-chat (inf-a's second engine).
        string BaseOf(int i) => i % 4 == 3 ? LoopbackCluster.TwinName : LoopbackCluster.ModelName;
        var ids = new string[Adapters];
        await Parallel.ForEachAsync(Enumerable.Range(0, Adapters), new ParallelOptions { MaxDegreeOfParallelism = 2 },
            async (i, _) => ids[i] = await cluster.UploadAdapterAsync($"spread-{i}", BaseOf(i)));

        // Other tests of the class register adapters of their own on these nodes: count from here.
        async Task<double> Registered(NodeProcess node, string model) =>
            await LoopbackCluster.MetricAsync(node, "loom_engine_adapters_registered", $"model=\"{model}\"");
        var before = new Dictionary<string, double>();
        foreach (var node in new[] { cluster.InfA, cluster.InfB, cluster.SlowA, cluster.SlowB })
            foreach (var model in new[] { LoopbackCluster.ModelName, LoopbackCluster.TwinName, SlowChatModel.Name })
                before[$"{node.Name}/{model}"] = await Registered(node, model);
        var routedBefore = await LoopbackCluster.MetricAsync(cluster.Api, "loom_cluster_requests_total");
        var affinityBefore = await LoopbackCluster.MetricAsync(cluster.Api, "loom_cluster_requests_total", "placement=\"affinity\"");
        var statuses = new List<HttpStatusCode>();
        await Parallel.ForEachAsync(Enumerable.Range(0, Adapters * RequestsPerAdapter), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
        {
            using var response = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat($"spread-{i % Adapters}", maxTokens: 2));
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, body);
            lock (statuses) statuses.Add(response.StatusCode);
        });
        Assert.Equal(Adapters * RequestsPerAdapter, statuses.Count);

        // Where each adapter hashes among the nodes serving its base model, and where the engines registered adapters.
        var tiny = Enumerable.Range(0, Adapters).Where(i => BaseOf(i) == LoopbackCluster.ModelName).Select(i => ids[i]).ToList();
        var twins = Adapters - tiny.Count;
        var tinyOnA = tiny.Count(id => Rendezvous.Rank(["inf-a", "inf-b"], n => n, Rendezvous.Key(LoopbackCluster.ModelName, id))[0] == "inf-a");
        async Task<double> Delta(NodeProcess node, string model) => await Registered(node, model) - before[$"{node.Name}/{model}"];
        var onA = await Delta(cluster.InfA, LoopbackCluster.ModelName);
        var onB = await Delta(cluster.InfB, LoopbackCluster.ModelName);
        var twinOnA = await Delta(cluster.InfA, LoopbackCluster.TwinName);
        var elsewhere = await Delta(cluster.InfB, LoopbackCluster.TwinName) + await Delta(cluster.SlowA, SlowChatModel.Name) + await Delta(cluster.SlowB, SlowChatModel.Name);
        var affinity = await LoopbackCluster.MetricAsync(cluster.Api, "loom_cluster_requests_total", "placement=\"affinity\"") - affinityBefore;
        var routed = await LoopbackCluster.MetricAsync(cluster.Api, "loom_cluster_requests_total") - routedBefore;
        output.WriteLine($"{Adapters} adapters ({tiny.Count} on {LoopbackCluster.ModelName}, {twins} on {LoopbackCluster.TwinName}), {statuses.Count} requests: " +
                         $"{LoopbackCluster.ModelName} registered on inf-a {onA} (hashed there {tinyOnA}), on inf-b {onB} (hashed there {tiny.Count - tinyOnA}); " +
                         $"{LoopbackCluster.TwinName} on inf-a {twinOnA}, elsewhere {elsewhere}; adapter registrations per adapter {(onA + onB + twinOnA + elsewhere) / Adapters:F3}; " +
                         $"placed by affinity {affinity} of {routed} routed ({affinity / routed:P1} hit rate)");

        // Spread: both nodes hold a fair part of tiny-chat's adapters; affinity: every adapter is registered once, on the
        // node it hashes to among those serving its base model; twin-chat's only on inf-a, no adapter on a node without its model.
        Assert.InRange(onA, tiny.Count * 0.3, tiny.Count * 0.7);
        Assert.Equal(tinyOnA, (int)onA);
        Assert.Equal(tiny.Count - tinyOnA, (int)onB);
        Assert.Equal(twins, (int)twinOnA);
        Assert.Equal(0, elsewhere);
        Assert.Equal(Adapters * RequestsPerAdapter, (int)routed);
        Assert.Equal(routed, affinity); // 8 requests at once stay under the load threshold (32)
    }

    [Fact]
    public async Task ModelsListsTheLiveBaseModelsAndAnUnknownModelIsA404()
    {
        // A base model in the registry that no live node serves (its node is gone): not listed, and refused as not loaded.
        await cluster.ScalarAsync<int>("INSERT INTO base_models (\"Id\", \"Name\", \"Path\", \"ContextLength\", \"WeightFormat\", \"CreatedAt\") " +
                                       "VALUES (gen_random_uuid(), @p, '/nowhere', 1024, 'Auto', now()) RETURNING 1", "gone-chat");
        var models = JsonDocument.Parse(await cluster.Client.GetStringAsync("/v1/models")).RootElement.GetProperty("data")
            .EnumerateArray().Where(m => m.GetProperty("owned_by").GetString() == "loom").Select(m => m.GetProperty("id").GetString()).ToList();
        output.WriteLine("base models listed: " + string.Join(", ", models));
        Assert.Equal(new[] { SlowChatModel.Name, LoopbackCluster.ModelName, LoopbackCluster.TwinName }, models.Order(StringComparer.Ordinal).ToArray());
        Assert.Equal(HttpStatusCode.NotFound, (await cluster.Client.GetAsync("/v1/models/gone-chat")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await cluster.Client.GetAsync($"/v1/models/{LoopbackCluster.TwinName}")).StatusCode);

        // The registry holds what the nodes' configuration said.
        Assert.Equal("Auto", await cluster.ScalarAsync<string>("SELECT \"WeightFormat\" FROM base_models WHERE \"Name\" = @p", LoopbackCluster.TwinName));
        Assert.Equal(1L, await cluster.ScalarAsync<long>("SELECT count(*) FROM inference_nodes WHERE @p = ANY(\"Models\")", LoopbackCluster.TwinName));
        // inf-a reports the load of each of its two engines (routing weighs the engine of the request's model).
        Assert.Equal(2, await cluster.ScalarAsync<int>("SELECT cardinality(\"ModelLoads\") FROM inference_nodes WHERE \"Id\" = @p", "inf-a"));

        // The second base model answers (on inf-a, its only node).
        var servedBefore = await LoopbackCluster.MetricAsync(cluster.InfA, "loom_engine_requests_total", $"model=\"{LoopbackCluster.TwinName}\"");
        using (var twin = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat(LoopbackCluster.TwinName, maxTokens: 2)))
        {
            var body = await twin.Content.ReadAsStringAsync();
            Assert.True(twin.StatusCode == HttpStatusCode.OK, body);
            Assert.Equal(LoopbackCluster.TwinName, JsonDocument.Parse(body).RootElement.GetProperty("model").GetString());
        }
        Assert.Equal(servedBefore + 1, await LoopbackCluster.MetricAtLeastAsync(cluster.InfA, "loom_engine_requests_total", $"model=\"{LoopbackCluster.TwinName}\"", servedBefore + 1));

        using var gone = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat("gone-chat", maxTokens: 2));
        var goneError = JsonDocument.Parse(await gone.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, gone.StatusCode);
        Assert.Equal("model_not_loaded", goneError.GetProperty("code").GetString());

        using var unknown = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat("no-such-model", maxTokens: 2));
        var error = JsonDocument.Parse(await unknown.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("model", error.GetProperty("param").GetString());
        Assert.Contains("no-such-model", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task AClientThatGoesAwayStopsTheRemoteGeneration()
    {
        // The node the slow model's requests hash to (the other one, should an earlier test have killed it).
        var (home, other) = cluster.SlowHome();
        if (home.HasExited) home = other;
        var cancelledBefore = await LoopbackCluster.MetricAsync(home, "loom_engine_requests_total", "outcome=\"cancelled\"");
        var generatedBefore = await LoopbackCluster.MetricAsync(home, "loom_engine_tokens_generated_total");

        using (var leave = new CancellationTokenSource())
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = LoopbackCluster.Chat(SlowChatModel.Name, maxTokens: 200, stream: true, n: 2, ignoreEos: true) })
        using (var response = await cluster.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, leave.Token))
        {
            await AssertOkAsync(response);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
            // Cancelling aborts the connection mid-stream (disposing alone would drain the rest to reuse the connection).
            await leave.CancelAsync();
        }

        var watch = Stopwatch.StartNew();
        double cancelled = cancelledBefore;
        while (watch.Elapsed < TimeSpan.FromSeconds(10) && cancelled <= cancelledBefore)
        {
            await Task.Delay(50);
            cancelled = await LoopbackCluster.MetricAsync(home, "loom_engine_requests_total", "outcome=\"cancelled\"");
        }
        var generated = await LoopbackCluster.MetricAsync(home, "loom_engine_tokens_generated_total") - generatedBefore;
        output.WriteLine($"the engine on {home.Name} counted the cancellation {watch.ElapsedMilliseconds} ms after the client left, having generated {generated} of 400 tokens");
        Assert.True(cancelled > cancelledBefore, $"the engine on {home.Name} never cancelled the request");
        Assert.True(generated < 2 * 200, $"the whole completion was generated ({generated} tokens): the test did not leave mid-stream");
        // Nothing keeps running for the departed client, and no later choice starts.
        await Task.Delay(500);
        Assert.Equal(0, await LoopbackCluster.MetricAsync(home, "loom_engine_sequences_running"));
        var after = await LoopbackCluster.MetricAsync(home, "loom_engine_tokens_generated_total") - generatedBefore;
        Assert.True(after - generated <= 1, $"{after - generated} tokens were generated after the cancellation was counted");
    }

    [Fact]
    public async Task ANodeKilledMidStreamEndsItWithARetryableErrorAndTheNextRequestsSucceed()
    {
        var (home, other) = cluster.SlowHome();
        Assert.False(home.HasExited);
        var since = DateTimeOffset.UtcNow;
        var servedByHome = await LoopbackCluster.MetricAsync(home, "loom_engine_requests_total");
        using (var warm = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat(SlowChatModel.Name, maxTokens: 2)))
            Assert.True(warm.StatusCode == HttpStatusCode.OK, await warm.Content.ReadAsStringAsync());
        Assert.True(await LoopbackCluster.MetricAtLeastAsync(home, "loom_engine_requests_total", null, servedByHome + 1) > servedByHome, "the request did not go to the node its model hashes to");

        var sinceRequest = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = LoopbackCluster.Chat(SlowChatModel.Name, maxTokens: 200, stream: true, n: 2, ignoreEos: true) };
        using var response = await cluster.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await AssertOkAsync(response);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: {", await reader.ReadLineAsync());

        var firstAt = sinceRequest.ElapsedMilliseconds;
        home.KillHard();
        var sinceKill = Stopwatch.StartNew();
        var killedAt = sinceRequest.ElapsedMilliseconds;
        string? last = null;
        var events = 0;
        while (await reader.ReadLineAsync() is { } line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) { last = line["data: ".Length..]; events++; }
        var ended = sinceKill.Elapsed;
        output.WriteLine($"first event {firstAt} ms after the request, kill -9 of {home.Name} done at {killedAt} ms; the stream ended {ended.TotalMilliseconds:F0} ms after the kill ({events} events after it), with: {last}");
        Assert.NotNull(last);
        Assert.NotEqual("[DONE]", last);
        var error = JsonDocument.Parse(last).RootElement.GetProperty("error");
        Assert.Equal("engine_unavailable", error.GetProperty("code").GetString());
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Contains("try again", error.GetProperty("message").GetString());
        Assert.True(ended < TimeSpan.FromSeconds(2), $"the stream ended {ended.TotalMilliseconds:F0} ms after the kill");

        // At once (before the dead node's heartbeat ages out), the model's requests succeed on the live node, streamed or not.
        var servedByOther = await LoopbackCluster.MetricAsync(other, "loom_engine_requests_total");
        var retry = Stopwatch.StartNew();
        for (var i = 0; i < 6; i++)
        {
            using var next = await cluster.Client.PostAsync("/v1/chat/completions", LoopbackCluster.Chat(SlowChatModel.Name, maxTokens: 2, stream: i % 2 == 1));
            var body = await next.Content.ReadAsStringAsync();
            Assert.True(next.StatusCode == HttpStatusCode.OK, body);
            if (i % 2 == 1) Assert.EndsWith("data: [DONE]", body.TrimEnd());
        }
        output.WriteLine($"6 requests after the kill took {retry.ElapsedMilliseconds} ms, all 200");
        Assert.Equal(servedByOther + 6, await LoopbackCluster.MetricAtLeastAsync(other, "loom_engine_requests_total", null, servedByOther + 6));

        // Usage: the first request, the cut stream once (the tokens it streamed), each later request once; never twice.
        const string usageSql = "SELECT count(*) FROM usage_records WHERE \"Model\" = 'slow-chat' AND \"CreatedAt\" >= @p";
        const long expectedUsage = 1 + 1 + 6;
        var watch = Stopwatch.StartNew();
        while (await cluster.ScalarAsync<long>(usageSql, since) < expectedUsage && watch.Elapsed < TimeSpan.FromSeconds(45))
            await Task.Delay(250);
        await Task.Delay(1000);
        Assert.Equal(expectedUsage, await cluster.ScalarAsync<long>(usageSql, since));
    }

    /// <summary>A streamed response's body is read only when the status is wrong (reading it would wait for the end).</summary>
    private static async Task AssertOkAsync(HttpResponseMessage response)
    {
        if (response.StatusCode != HttpStatusCode.OK) Assert.Fail($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }
}
