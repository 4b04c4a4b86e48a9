using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Loom.Cluster.Tests;

/// <summary>
/// An OTLP/HTTP endpoint on loopback that keeps what each node exports (protobuf bodies, not decoded): a node is
/// pointed at <c>http://127.0.0.1:port/&lt;node&gt;</c> and posts its spans to <c>/&lt;node&gt;/v1/traces</c>. Enough
/// to ask whether a node recorded a span of a given trace (a trace id is 16 raw bytes in the body).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<(string Node, byte[] Body)> _traces = [];

    public Uri BaseAddress { get; }

    private OtlpReceiver(WebApplication app, Uri baseAddress) => (_app, BaseAddress) = (app, baseAddress);

    public static async Task<OtlpReceiver> StartAsync()
    {
        var url = $"http://127.0.0.1:{NodeProcess.FreePort()}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(url);
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new OtlpReceiver(app, new Uri(url));
        app.MapPost("/{node}/v1/{signal}", async (string node, string signal, HttpRequest request) =>
        {
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body);
            if (signal == "traces") lock (receiver._traces) receiver._traces.Add((node, body.ToArray()));
            return Results.Bytes([], "application/x-protobuf");
        });
        await app.StartAsync();
        return receiver;
    }

    /// <summary>The settings that send a node's traces here (only those of requests that arrive sampled: the sampler
    /// follows the parent and samples no root span, so the cluster's other traffic exports nothing).</summary>
    public Dictionary<string, string> SettingsFor(string node) => new()
    {
        ["OTEL_EXPORTER_OTLP_ENDPOINT"] = new Uri(BaseAddress, node).ToString(),
        ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
        ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio",
        ["OTEL_TRACES_SAMPLER_ARG"] = "0",
        ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
        ["OTEL_METRIC_EXPORT_INTERVAL"] = "3600000",
    };

    /// <summary>The nodes that exported a span of <paramref name="traceId"/> (16 bytes) so far.</summary>
    public HashSet<string> NodesWithTrace(byte[] traceId)
    {
        lock (_traces) return [.. _traces.Where(t => t.Body.AsSpan().IndexOf(traceId) >= 0).Select(t => t.Node)];
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
