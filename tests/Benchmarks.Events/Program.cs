// Job events from the publisher to SignalR clients of a separate Loom web node (loopback, WebSockets): the
// latency of single events (insert + NOTIFY + LISTEN + hub push), and how many events per second one web node
// fans out to several clients at once. Run with tests/Benchmarks.Events/run.sh (see BENCHMARKS.md).
using System.Collections.Concurrent;
using System.Diagnostics;
using Loom.Data;
using Loom.Jobs;
using Loom.Jobs.Events;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

var baseUrl = Environment.GetEnvironmentVariable("LOOM_URL") ?? "http://127.0.0.1:5091";
var key = File.ReadAllText(Environment.GetEnvironmentVariable("LOOM_KEY_FILE") ?? throw new InvalidOperationException("LOOM_KEY_FILE is not set")).Trim();
var db = Environment.GetEnvironmentVariable("LOOM_DB") ?? throw new InvalidOperationException("LOOM_DB is not set");
int latencyEvents = int.Parse(Environment.GetEnvironmentVariable("BENCH_EVENTS") ?? "1000");
int burstEvents = int.Parse(Environment.GetEnvironmentVariable("BENCH_BURST") ?? "5000");
int clients = int.Parse(Environment.GetEnvironmentVariable("BENCH_CLIENTS") ?? "8");
int publishers = int.Parse(Environment.GetEnvironmentVariable("BENCH_PUBLISHERS") ?? "4");
int rounds = int.Parse(Environment.GetEnvironmentVariable("BENCH_ROUNDS") ?? "3");

// The publisher exactly as Loom's roles register it.
var config = new ConfigurationBuilder().AddInMemoryCollection([new("ConnectionStrings:Loom", db)]).Build();
await using var services = new ServiceCollection().AddLogging().AddSingleton<IConfiguration>(config).AddData(config).AddJobs(config, runServer: false).BuildServiceProvider();
var publisher = services.GetRequiredService<IJobEventPublisher>();
Guid tenant;
await using (var conn = new NpgsqlConnection(db))
{
    await conn.OpenAsync();
    await using var cmd = new NpgsqlCommand("SELECT \"TenantId\" FROM api_keys ORDER BY \"CreatedAt\" LIMIT 1", conn);
    tenant = (Guid)(await cmd.ExecuteScalarAsync())!;
}
Console.Error.WriteLine($"tenant {tenant}");

async Task<HubConnection> ConnectAsync(Action<JobEventMessage> onEvent)
{
    var hub = new HubConnectionBuilder().WithUrl($"{baseUrl}/hubs/jobs", o =>
    {
        o.Transports = HttpTransportType.WebSockets;
        o.AccessTokenProvider = () => Task.FromResult<string?>(key);
    }).Build();
    hub.On("jobEvent", onEvent);
    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
    await hub.StartAsync(timeout.Token);
    await hub.InvokeAsync("SubscribeTenant", timeout.Token);
    return hub;
}

static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

Console.WriteLine($"Job events: {latencyEvents} single events, then bursts of {burstEvents} from {publishers} publishers to {clients} clients; {rounds} rounds; {Environment.ProcessorCount} cores");
var p50s = new List<double>(); var p99s = new List<double>(); var rates = new List<double>(); var deliveries = new List<double>();
for (var round = 1; round <= rounds; round++)
{
    // Latency: one event at a time; time from before the publish call to the client's handler.
    var sent = new ConcurrentDictionary<string, long>();
    var latencies = new List<double>();
    TaskCompletionSource? arrived = null;
    var job = $"bench-latency-{round}-{Guid.NewGuid():N}";
    await using (var hub = await ConnectAsync(e =>
    {
        if (e.JobId != job) return;
        var now = Stopwatch.GetTimestamp();
        if (sent.TryGetValue(e.Seq.ToString(), out var t)) lock (latencies) latencies.Add(Stopwatch.GetElapsedTime(t, now).TotalMilliseconds);
        arrived?.TrySetResult();
    }))
    {
        Console.Error.WriteLine("connected");
        for (var i = 1; i <= latencyEvents; i++)
        {
            arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            sent[i.ToString()] = Stopwatch.GetTimestamp();
            await publisher.PublishAsync(tenant, job, "step", new { step = i, loss = 1.0 / i });
            await arrived.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }
    latencies.Sort();
    p50s.Add(Percentile(latencies, 0.50)); p99s.Add(Percentile(latencies, 0.99));

    // Fan-out: several publishers as fast as they can, several clients; rate until every client has every event.
    var received = new int[clients];
    var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var burstJob = $"bench-burst-{round}-{Guid.NewGuid():N}";
    var hubs = new List<HubConnection>();
    for (var c = 0; c < clients; c++)
    {
        var index = c;
        hubs.Add(await ConnectAsync(e =>
        {
            if (!e.JobId.StartsWith(burstJob, StringComparison.Ordinal)) return;
            if (Interlocked.Increment(ref received[index]) == burstEvents && received.All(r => r >= burstEvents)) done.TrySetResult();
        }));
    }
    var watch = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, publishers).Select(p => Task.Run(async () =>
    {
        for (var i = p; i < burstEvents; i += publishers) await publisher.PublishAsync(tenant, $"{burstJob}-{p}", "step", new { step = i });
    })));
    var published = watch.Elapsed.TotalSeconds;
    await done.Task.WaitAsync(TimeSpan.FromMinutes(5));
    var seconds = watch.Elapsed.TotalSeconds;
    foreach (var h in hubs) await h.DisposeAsync();
    rates.Add(burstEvents / seconds);
    deliveries.Add(burstEvents * (double)clients / seconds);
    Console.WriteLine($"round {round}: latency p50 {p50s[^1]:F2} ms, p99 {p99s[^1]:F2} ms; burst {burstEvents / seconds:F0} events/s to {clients} clients ({burstEvents * (double)clients / seconds:F0} deliveries/s; publishing alone {burstEvents / published:F0}/s)");
}
static double Median(List<double> v) { var s = v.Order().ToList(); return s[s.Count / 2]; }
Console.WriteLine($"median of {rounds}: latency p50 {Median(p50s):F2} ms, p99 {Median(p99s):F2} ms; {Median(rates):F0} events/s fanned out to {clients} clients ({Median(deliveries):F0} deliveries/s)");
