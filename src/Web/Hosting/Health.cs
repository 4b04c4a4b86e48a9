using Loom.Data;

namespace Loom.Web.Hosting;

internal static class Health
{
    /// <summary>/healthz: the process is up. /readyz: the database is reachable and migrated, and where this process
    /// serves a model, its engine answers and (on a registered inference node) its heartbeat is current.</summary>
    public static void MapHealth(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" })).AllowAnonymous().ExcludeFromDescription();
        app.MapGet("/readyz", async (DatabaseMigrator migrator, IServiceProvider services, CancellationToken ct) =>
        {
            var s = await migrator.CheckAsync(ct);
            var engine = Loom.Cluster.ClusterModule.EngineReadiness(services);
            var ready = s.UpToDate && engine is not { Ready: false };
            var body = new { status = ready ? "ready" : "not_ready", database = s.Reachable ? "reachable" : "unreachable", migrations = s.UpToDate ? "applied" : "pending",
                engine = engine?.Engine, problem = s.Problem };
            return Results.Json(body, statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        }).AllowAnonymous().ExcludeFromDescription();
    }
}
