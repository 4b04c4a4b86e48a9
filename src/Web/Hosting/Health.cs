using Loom.Data;

namespace Loom.Web.Hosting;

internal static class Health
{
    /// <summary>/healthz: the process is up. /readyz: the database is reachable and migrated.</summary>
    public static void MapHealth(this WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" })).AllowAnonymous().ExcludeFromDescription();
        app.MapGet("/readyz", async (DatabaseMigrator migrator, CancellationToken ct) =>
        {
            var s = await migrator.CheckAsync(ct);
            var body = new { status = s.UpToDate ? "ready" : "not_ready", database = s.Reachable ? "reachable" : "unreachable", migrations = s.UpToDate ? "applied" : "pending", problem = s.Problem };
            return Results.Json(body, statusCode: s.UpToDate ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        }).AllowAnonymous().ExcludeFromDescription();
    }
}
