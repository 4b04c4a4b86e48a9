using Loom.Api;

namespace Loom.Web.Realtime;

/// <summary>Live pushes to browsers and API clients (role "web"): the job-event listener and <see cref="JobsHub"/>.</summary>
public static class RealtimeModule
{
    public static IServiceCollection AddRealtime(this IServiceCollection services)
    {
        services.AddSignalR();
        services.AddApiKeyAuthentication(); // the hub also takes API keys, on nodes without the api role too
        services.AddSingleton<JobEventListener>();
        services.AddHostedService(sp => sp.GetRequiredService<JobEventListener>());
        return services;
    }

    public static WebApplication MapRealtime(this WebApplication app)
    {
        app.MapHub<JobsHub>(JobsHub.Path);
        return app;
    }
}
