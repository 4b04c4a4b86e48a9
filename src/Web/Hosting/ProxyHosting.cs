using System.Net;
using Microsoft.AspNetCore.HttpOverrides;

namespace Loom.Web.Hosting;

/// <summary>Bound from "Loom:Proxy": the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed.</summary>
public sealed class ProxyOptions
{
    /// <summary>Addresses of trusted proxies (e.g. 10.0.0.5). Empty: forwarded headers are ignored (the default).</summary>
    public List<string> KnownProxies { get; set; } = [];

    /// <summary>Networks of trusted proxies in CIDR form (e.g. 10.0.0.0/8).</summary>
    public List<string> KnownNetworks { get; set; } = [];
}

/// <summary>
/// What a Loom process needs behind a TLS-terminating proxy: the client's address and scheme from the forwarded
/// headers of a configured proxy only (so per-IP limits and Secure cookies see the real client), and HSTS outside
/// development.
/// </summary>
public static class ProxyHosting
{
    public static IServiceCollection AddLoomProxy(this IServiceCollection services, IConfiguration configuration)
    {
        var proxy = configuration.GetSection("Loom:Proxy").Get<ProxyOptions>() ?? new ProxyOptions();
        services.Configure<ForwardedHeadersOptions>(o =>
        {
            o.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            // Nothing is trusted by default (not even loopback): only what configuration names.
            o.KnownProxies.Clear();
            o.KnownIPNetworks.Clear();
            foreach (var p in proxy.KnownProxies) o.KnownProxies.Add(IPAddress.Parse(p));
            foreach (var n in proxy.KnownNetworks) o.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(n));
        });
        services.AddHsts(o => o.MaxAge = TimeSpan.FromDays(180));
        return services;
    }

    /// <summary>First in the pipeline, so everything after sees the client's address and scheme.</summary>
    public static WebApplication UseLoomProxy(this WebApplication app)
    {
        app.UseForwardedHeaders();
        if (!app.Environment.IsDevelopment()) app.UseHsts();
        return app;
    }
}
