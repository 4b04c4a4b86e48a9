using Hangfire;
using Hangfire.Server;
using Loom.Data;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace Loom.Jobs.Worker;

/// <summary>
/// Jobs that record what they do in probe tables (who ran what, when), so tests can count runs across processes.
/// Each write is keyed, so the tests can tell a second run of a job from a second job.
/// </summary>
public sealed class ProbeJobs(IConfiguration configuration)
{
    public const string Schema = """
        CREATE TABLE IF NOT EXISTS probe_runs (key text NOT NULL, pid int NOT NULL, event text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE TABLE IF NOT EXISTS probe_ticks (occurrence bigint NOT NULL, pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
        """;

    /// <summary>Starts, works for <paramref name="seconds"/>, finishes; stops early if its server shuts down.</summary>
    public async Task Run(string key, double seconds, CancellationToken ct)
    {
        await RecordAsync(key, "start");
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < until) await Task.Delay(50, ct);
        await RecordAsync(key, "done");
    }

    /// <summary>Fails its first <paramref name="failures"/> attempts, then succeeds.</summary>
    [AutomaticRetry(Attempts = 5, DelaysInSeconds = [1])]
    public async Task Flaky(string key, int failures)
    {
        await RecordAsync(key, "attempt");
        await using var conn = await OpenAsync();
        await using var count = new NpgsqlCommand("SELECT count(*) FROM probe_runs WHERE key = @k AND event = 'attempt'", conn);
        count.Parameters.AddWithValue("k", key);
        if ((long)(await count.ExecuteScalarAsync())! <= failures) throw new InvalidOperationException("planned failure");
        await RecordAsync(key, "done");
    }

    /// <summary>A recurring job: records the occurrence (scheduled time) it was fired for.</summary>
    public async Task Tick(PerformContext context)
    {
        var occurrence = context.GetJobParameter<long>("Time");
        await using var conn = await OpenAsync();
        await using var cmd = new NpgsqlCommand("INSERT INTO probe_ticks (occurrence, pid) VALUES (@o, @p)", conn);
        cmd.Parameters.AddWithValue("o", occurrence);
        cmd.Parameters.AddWithValue("p", Environment.ProcessId);
        await cmd.ExecuteNonQueryAsync();
    }

    private async Task RecordAsync(string key, string what)
    {
        await using var conn = await OpenAsync();
        await using var cmd = new NpgsqlCommand("INSERT INTO probe_runs (key, pid, event) VALUES (@k, @p, @e)", conn);
        cmd.Parameters.AddWithValue("k", key);
        cmd.Parameters.AddWithValue("p", Environment.ProcessId);
        cmd.Parameters.AddWithValue("e", what);
        await cmd.ExecuteNonQueryAsync();
    }

    private async Task<NpgsqlConnection> OpenAsync()
    {
        var conn = new NpgsqlConnection(configuration.GetConnectionString(DataModule.ConnectionStringName));
        await conn.OpenAsync();
        return conn;
    }
}
