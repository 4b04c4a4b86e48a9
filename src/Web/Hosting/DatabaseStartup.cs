using Loom.Data;
using Microsoft.Extensions.Options;

namespace Loom.Web.Hosting;

internal static class DatabaseStartup
{
    /// <summary>
    /// Applies migrations. When the database cannot be reached, logs one line naming host and port
    /// and returns false (the host then exits with code 2) instead of throwing a stack trace.
    /// </summary>
    public static async Task<bool> PrepareDatabaseAsync(this WebApplication app, IConfiguration configuration)
    {
        if (!app.Services.GetRequiredService<IOptions<DataOptions>>().Value.MigrateOnStart) return true;
        var connectionString = configuration.GetConnectionString(DataModule.ConnectionStringName)!;
        var endpoint = DatabaseMigrator.Endpoint(connectionString);
        try
        {
            // Probe with a plain connection first, so an unreachable server yields one line, not EF's error log.
            await using (var probe = new Npgsql.NpgsqlConnection(connectionString)) await probe.OpenAsync();
            await app.Services.GetRequiredService<DatabaseMigrator>().MigrateAsync();
            return true;
        }
        catch (Exception e) when (DatabaseMigrator.IsConnectionFailure(e))
        {
            app.Logger.LogCritical("Cannot reach PostgreSQL at {Endpoint}: {Reason}. Is the database running?", endpoint, Innermost(e).Message);
            return false;
        }
        catch (Npgsql.PostgresException e)
        {
            app.Logger.LogCritical("PostgreSQL at {Endpoint} refused start-up: {Code} {Reason}", endpoint, e.SqlState, e.MessageText);
            return false;
        }
    }

    private static Exception Innermost(Exception e) => e.InnerException is null ? e : Innermost(e.InnerException);
}
