using Loom.Cluster.Nodes;
using Loom.Cluster.Rpc;
using Loom.Inference.Engine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Loom.Cluster;

/// <summary>
/// Entry point of the cluster wiring. A process with the inference role reaches its own engine in-process; with
/// Cluster:InternalUrl set it also serves the engine to API nodes over gRPC on that (HTTP/2-only) endpoint and
/// registers itself in <c>inference_nodes</c> with a heartbeat. A process with the api or web role and no inference
/// role reaches engines through <see cref="RemoteInferenceClient"/>.
/// </summary>
public static class ClusterModule
{
    private const string InternalEndpoint = "LoomClusterInternal";
    private const string RpcPathPrefix = "/loom.inference.v1.";

    public static WebApplicationBuilder AddLoomCluster(this WebApplicationBuilder builder, bool inference, bool apiOrWeb)
    {
        var services = builder.Services;
        services.AddOptions<ClusterOptions>().BindConfiguration(ClusterOptions.SectionName)
            .Validate(o => o.Problem() is null, "Cluster options are invalid (see ClusterOptions.Problem)").ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ClusterMeters>();
        services.AddSingleton<NodeIdentity>();
        services.AddSingleton<EngineAdmission>();
        if (inference)
        {
            services.AddSingleton<IInferenceClient, InProcessInferenceClient>();
            if (InternalUrl(builder.Configuration) is { } url)
            {
                services.AddGrpc(o => o.MaxReceiveMessageSize = 16 << 20);
                services.AddSingleton<NodeHeartbeat>();
                services.AddHostedService(sp => sp.GetRequiredService<NodeHeartbeat>());
                Listen(builder.Configuration, url);
            }
        }
        else if (apiOrWeb)
        {
            services.AddSingleton<NodeDirectory>();
            services.AddSingleton<RemoteInferenceClient>();
            services.AddSingleton<IInferenceClient>(sp => sp.GetRequiredService<RemoteInferenceClient>());
        }
        return builder;
    }

    /// <summary>Maps the RPC on the internal endpoint only, and keeps everything else off it.</summary>
    public static WebApplication UseLoomCluster(this WebApplication app)
    {
        if (InternalUrl(app.Configuration) is not { } url || app.Services.GetService<NodeHeartbeat>() is null) return app;
        var port = new Uri(url).Port;
        app.Use((context, next) =>
        {
            var onInternal = context.Connection.LocalPort == port;
            var isRpc = context.Request.Path.Value?.StartsWith(RpcPathPrefix, StringComparison.Ordinal) == true;
            if (onInternal != isRpc)
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }
            return next(context);
        });
        app.MapGrpcService<InferenceNodeService>();
        return app;
    }

    /// <summary>Readiness of this node's engines and registration; null where the process serves no model.</summary>
    public static (bool Ready, string Engine)? EngineReadiness(IServiceProvider services)
    {
        if (services.GetService<ServedEngines>() is not { All.Count: > 0 } engines) return null;
        try
        {
            foreach (var engine in engines.All) engine.GetMetrics();
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            return (false, "failed");
        }
        if (services.GetService<NodeHeartbeat>() is { Registered: false }) return (false, "unregistered");
        return (true, "serving");
    }

    private static string? InternalUrl(IConfiguration configuration) =>
        configuration[$"{ClusterOptions.SectionName}:{nameof(ClusterOptions.InternalUrl)}"] is { Length: > 0 } u ? u : null;

    /// <summary>Adds the internal HTTP/2 endpoint to Kestrel's configuration, and the public URLs (ASPNETCORE_URLS or
    /// --urls) as endpoints beside it, since configured endpoints replace those.</summary>
    private static void Listen(ConfigurationManager configuration, string internalUrl)
    {
        var settings = new Dictionary<string, string?>
        {
            [$"Kestrel:Endpoints:{InternalEndpoint}:Url"] = internalUrl,
            [$"Kestrel:Endpoints:{InternalEndpoint}:Protocols"] = "Http2",
        };
        if (!configuration.GetSection("Kestrel:Endpoints").GetChildren().Any())
        {
            var urls = configuration["urls"] is { Length: > 0 } u ? u : "http://localhost:5000";
            var i = 0;
            foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                settings[$"Kestrel:Endpoints:LoomPublic{i++}:Url"] = url;
        }
        configuration.AddInMemoryCollection(settings);
    }
}
