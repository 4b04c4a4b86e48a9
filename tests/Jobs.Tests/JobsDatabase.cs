using Hangfire;
using Loom.Data;
using Loom.Jobs;
using Loom.Jobs.Worker;
using Loom.Tests.Shared;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Loom.Jobs.Tests;

/// <summary>
/// A fresh Loom database (the app's migrations, the probe tables) and a jobs client set up exactly as Loom's own
/// processes set it up (AddJobs without a server). The invisibility timeout is short so crash tests stay quick.
/// </summary>
public sealed class JobsDatabase : IAsyncLifetime
{
    public static readonly TimeSpan InvisibilityTimeout = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan QueuePollInterval = TimeSpan.FromSeconds(1);

    private TestDatabase? _database;
    private ServiceProvider? _services;

    public string ConnectionString => _database!.ConnectionString;
    public IServiceProvider Services => _services!;
    public IBackgroundJobClient Client => Services.GetRequiredService<IBackgroundJobClient>();
    public IRecurringJobManager Recurring => Services.GetRequiredService<IRecurringJobManager>();

    /// <summary>Settings every jobs process of the test gets (as environment variables for worker processes).</summary>
    public IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["ConnectionStrings:Loom"] = ConnectionString,
        ["Jobs:InvisibilityTimeout"] = InvisibilityTimeout.ToString(),
        ["Jobs:QueuePollInterval"] = QueuePollInterval.ToString(),
    };

    public async Task InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync("loom_jobs");
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(Settings.Select(kv => new KeyValuePair<string, string?>(kv.Key, kv.Value))).Build();
        var services = new ServiceCollection().AddLogging().AddSingleton<IConfiguration>(configuration);
        services.AddData(configuration);
        services.AddJobs(configuration, runServer: false);
        _services = services.BuildServiceProvider();
        await using (var scope = _services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<PlatformDbContext>().Database.MigrateAsync();
        await ExecuteAsync(ProbeJobs.Schema);
    }

    public async Task ExecuteAsync(string sql)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task<List<T>> QueryAsync<T>(string sql, Func<NpgsqlDataReader, T> read)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        await using var reader = await cmd.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync()) rows.Add(read(reader));
        return rows;
    }

    /// <summary>Probe runs as (key, pid, event) in order.</summary>
    public Task<List<(string Key, int Pid, string Event)>> RunsAsync() =>
        QueryAsync("SELECT key, pid, event FROM probe_runs ORDER BY at", r => (r.GetString(0), r.GetInt32(1), r.GetString(2)));

    public async Task DisposeAsync()
    {
        if (_services is not null) await _services.DisposeAsync();
        if (_database is not null) await _database.DisposeAsync();
    }

    /// <summary>Polls until <paramref name="done"/> holds or the time is up; false if it never held.</summary>
    public static async Task<bool> UntilAsync(Func<Task<bool>> done, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < deadline)
        {
            if (await done()) return true;
            await Task.Delay(100);
        }
        return await done();
    }
}
