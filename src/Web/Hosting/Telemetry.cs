using System.Net;
using System.Security.Cryptography;
using System.Text;
using Loom.Inference.Engine;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Loom.Web.Hosting;

/// <summary>
/// OpenTelemetry for every role: metrics (ASP.NET Core, HttpClient, the .NET runtime, and the engine's own meter
/// <see cref="EngineMeters"/> where this process serves a model) and traces (ASP.NET Core, HttpClient, Npgsql).
/// Metrics are scraped by Prometheus at <c>/metrics</c>; both signals go to an OTLP collector when the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set. The scrape endpoint answers requests from loopback, or bearing
/// <c>Loom:Telemetry:ScrapeToken</c> when one is configured (its per-tenant series name tenants); others get a 404.
/// A scrape's answer is reused for <see cref="ScrapeCacheMilliseconds"/>.
/// </summary>
internal static class Telemetry
{
    public const string ScrapePath = "/metrics";

    public static IServiceCollection AddLoomTelemetry(this IServiceCollection services, IConfiguration configuration, LoomRoles roles)
    {
        var otlp = !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var scrapeCache = ScrapeCacheMilliseconds(configuration); // a bad value stops the start, not the first scrape
        var builder = services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("loom", serviceInstanceId: $"{Environment.MachineName}:{Environment.ProcessId}")
                .AddAttributes([new("loom.roles", roles.ToString())]))
            .WithMetrics(m =>
            {
                m.AddAspNetCoreInstrumentation().AddHttpClientInstrumentation().AddRuntimeInstrumentation()
                    .AddMeter(EngineMeters.MeterName, Loom.Cluster.ClusterMeters.MeterName)
                    .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = scrapeCache);
            })
            .WithTracing(t => t.AddAspNetCoreInstrumentation(o => o.Filter = http => http.Request.Path != ScrapePath)
                .AddHttpClientInstrumentation().AddNpgsql());
        if (otlp) builder.UseOtlpExporter();
        // Where models are served (an unconfigured engine has nothing to measure): one set per engine, tagged by its model.
        if (roles.Inference)
            services.AddSingleton(sp => new EngineMetersHandle([.. sp.GetRequiredService<ServedEngines>().All.OfType<ServingEngine>()
                .Select(engine => new EngineMeters(engine, sp.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>()))]));
        return services;
    }

    /// <summary>How long a scrape's answer is reused for the next scrapes: <c>Loom:Telemetry:ScrapeCacheMilliseconds</c>,
    /// 300 by default (the exporter's own default); 0 collects on every scrape (tests that read a count right after the
    /// requests it should include).</summary>
    public static int ScrapeCacheMilliseconds(IConfiguration configuration) =>
        configuration["Loom:Telemetry:ScrapeCacheMilliseconds"] is not { Length: > 0 } text ? 300
        : int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ms) && ms <= 60_000 ? ms
        : throw new InvalidOperationException($"Loom:Telemetry:ScrapeCacheMilliseconds must be a whole number of milliseconds from 0 to 60000, not '{text}'");

    /// <summary>Builds the engine's instruments (they register with the meter on creation) and maps the scrape endpoint.</summary>
    public static void MapTelemetry(this WebApplication app)
    {
        app.Services.GetService<EngineMetersHandle>();
        var token = app.Configuration["Loom:Telemetry:ScrapeToken"];
        app.UseOpenTelemetryPrometheusScrapingEndpoint(http => http.Request.Path == ScrapePath && MayScrape(http, token));
    }

    private static bool MayScrape(HttpContext http, string? token)
    {
        if (string.IsNullOrEmpty(token)) return http.Connection.RemoteIpAddress is { } ip && IPAddress.IsLoopback(ip);
        var header = http.Request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.Ordinal)
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[7..]), Encoding.UTF8.GetBytes(token));
    }

    /// <summary>The engines' instruments, none where no model is served; disposed with the host.</summary>
    private sealed class EngineMetersHandle(IReadOnlyList<EngineMeters> meters) : IDisposable
    {
        public void Dispose()
        {
            foreach (var m in meters) m.Dispose();
        }
    }
}
