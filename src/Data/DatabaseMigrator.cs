using System.Net.Sockets;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Loom.Data;

/// <summary>Outcome of <see cref="DatabaseMigrator.CheckAsync"/>, used by /readyz.</summary>
public sealed record DatabaseStatus(bool Reachable, bool UpToDate, string? Problem);

/// <summary>Applies migrations at start-up and answers readiness checks.</summary>
/// <remarks>Migrations are only ever added by a newer build, which starts a new process: once this process has seen
/// them applied it remembers it, and later readiness checks only test the connection (EF's pending-migrations check
/// reads the history table and compares it with the assembly's migrations, which a node under heavy load can take
/// longer than the front's one-second probe timeout to do).</remarks>
public sealed class DatabaseMigrator(IServiceScopeFactory scopes, ILogger<DatabaseMigrator> logger)
{
    private volatile bool _applied;

    public async Task MigrateAsync(CancellationToken ct = default)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        // Create the history table first, so EF's look-ups on a new database don't log failed queries.
        var history = db.GetService<IHistoryRepository>();
        await db.Database.ExecuteSqlRawAsync(history.GetCreateIfNotExistsScript(), ct);
        var pending = (await db.Database.GetPendingMigrationsAsync(ct)).ToList();
        if (pending.Count > 0)
        {
            logger.LogInformation("Applying {Count} database migration(s): {Migrations}", pending.Count, string.Join(", ", pending));
            await db.Database.MigrateAsync(ct);
        }
        _applied = true;
    }

    public async Task<DatabaseStatus> CheckAsync(CancellationToken ct = default)
    {
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
            if (!await db.Database.CanConnectAsync(ct)) return new(false, false, "database unreachable");
            if (_applied) return new(true, true, null);
            var pending = (await db.Database.GetPendingMigrationsAsync(ct)).Count();
            if (pending > 0) return new(true, false, $"{pending} migration(s) pending");
            _applied = true;
            return new(true, true, null);
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            return new(false, false, "database unreachable");
        }
    }

    /// <summary>True for the exceptions a down or unreachable server produces.</summary>
    public static bool IsConnectionFailure(Exception e) => e switch
    {
        NpgsqlException { IsTransient: true } => true,
        NpgsqlException { InnerException: SocketException or TimeoutException or IOException } => true,
        SocketException or TimeoutException => true,
        InvalidOperationException { InnerException: { } inner } => IsConnectionFailure(inner),
        _ when e.InnerException is NpgsqlException inner => IsConnectionFailure(inner),
        _ => false,
    };

    /// <summary>"host:port" of a connection string, for the one-line start-up error.</summary>
    public static string Endpoint(string connectionString)
    {
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        return $"{b.Host}:{b.Port}";
    }
}
