using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using Xunit.Abstractions;

namespace Loom.Cluster.Tests;

/// <summary>A request's trace crosses the gRPC call: the W3C traceparent the API node received reaches the inference
/// node that ran the generation, whose server span joins the same trace (both export it over OTLP).</summary>
[Collection(LoopbackCluster.Collection)]
public sealed class TraceAcrossNodesTests(LoopbackCluster cluster, ITestOutputHelper output)
{
    [Fact]
    public async Task TheInferenceNodesSpanJoinsTheApiNodesTrace()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var bytes = new byte[16];
        traceId.CopyTo(bytes);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = LoopbackCluster.Chat(LoopbackCluster.TwinName, maxTokens: 2) };
        request.Headers.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        using (var response = await cluster.Client.SendAsync(request))
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());

        // twin-chat is served by inf-a alone: its span of this trace, and the API node's, arrive within a few export periods.
        var waited = Stopwatch.StartNew();
        HashSet<string> nodes;
        while (!(nodes = cluster.Otlp.NodesWithTrace(bytes)).IsSupersetOf(["api-1", "inf-a"]) && waited.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(200);
        output.WriteLine($"trace {traceId} exported by: {string.Join(", ", nodes.Order())} ({waited.ElapsedMilliseconds} ms)");
        Assert.Contains("api-1", nodes);
        Assert.Contains("inf-a", nodes);
        Assert.DoesNotContain("inf-b", nodes); // only the node that ran it
    }
}
