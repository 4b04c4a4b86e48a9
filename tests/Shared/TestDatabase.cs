using Npgsql;

namespace Loom.Tests.Shared;

/// <summary>
/// A fresh PostgreSQL database on the throwaway server that deploy/local/test.sh starts.
/// The server is named by LOOM_TEST_PG, a connection string with a role that may CREATE DATABASE
/// (test.sh exports it). Each instance creates one uniquely named database and drops it on dispose.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    public const string EnvironmentVariable = "LOOM_TEST_PG";

    private readonly string _server;

    public string Name { get; }
    public string ConnectionString { get; }

    private TestDatabase(string server, string name)
    {
        _server = server;
        Name = name;
        ConnectionString = new NpgsqlConnectionStringBuilder(server) { Database = name, Pooling = true }.ConnectionString;
    }

    public static string ServerConnectionString =>
        Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } s
            ? s
            : throw new InvalidOperationException(
                $"{EnvironmentVariable} is not set: run the tests through deploy/local/test.sh, which starts PostgreSQL and sets it.");

    /// <summary>Creates an empty database (the application's migrations build the schema).</summary>
    public static async Task<TestDatabase> CreateAsync(string prefix = "loom_test")
    {
        var server = ServerConnectionString;
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(63, prefix.Length + 33)];
        await using var conn = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(server) { Database = "postgres", Pooling = false }.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", conn);
        await cmd.ExecuteNonQueryAsync();
        return new TestDatabase(server, name);
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var conn = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(_server) { Database = "postgres", Pooling = false }.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{Name}\" WITH (FORCE)", conn);
        // FORCE ends the sessions it finds; one that connects meanwhile (a background loop of a host being stopped) can
        // make the drop fail, and another try ends it too. A drop that keeps failing says why, with PostgreSQL's code.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await cmd.ExecuteNonQueryAsync();
                return;
            }
            catch (PostgresException e) when (attempt < 5)
            {
                Console.Error.WriteLine($"dropping test database {Name}: {e.SqlState} {e.MessageText}; trying again");
                await Task.Delay(200 * attempt);
            }
            catch (PostgresException e)
            {
                throw new InvalidOperationException($"dropping test database {Name} failed: {e.SqlState} {e.MessageText}", e);
            }
        }
    }
}
