using System.Collections.Concurrent;
using System.Text.Json;
using Loom.Jobs.Events;
using Loom.Web.Realtime;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Jobs.Tests;

/// <summary>
/// Job events through PostgreSQL NOTIFY to SignalR clients of two web nodes on one database: every event reaches
/// every subscriber of its own tenant once and in order, never another tenant's; a client that drops and comes
/// back from its last sequence number misses nothing.
/// </summary>
public sealed class JobEventsTests : IAsyncLifetime
{
    private readonly JobsDatabase _db = new();
    private WebNode? _one, _two;

    public async Task InitializeAsync()
    {
        await _db.InitializeAsync();
        _one = new WebNode(_db.ConnectionString, "web");
        _two = new WebNode(_db.ConnectionString, "web");
        _ = _one.Server;
        _ = _two.Server;
        Assert.True(await JobsDatabase.UntilAsync(() => Task.FromResult(Listening(_one) && Listening(_two)), TimeSpan.FromSeconds(30)));
    }

    private static bool Listening(WebNode node) => node.Services.GetRequiredService<JobEventListener>().Listening;

    public async Task DisposeAsync()
    {
        if (_one is not null) await _one.DisposeAsync();
        if (_two is not null) await _two.DisposeAsync();
        await _db.DisposeAsync();
    }

    private IJobEventPublisher Publisher => _db.Services.GetRequiredService<IJobEventPublisher>();

    [Fact]
    public async Task EventsFanOutAcrossWebNodesToTheirOwnTenantOnly()
    {
        var a = await _one!.CreateTenantAsync("a");
        var b = await _one.CreateTenantAsync("b");
        var keyA = await _one.CreateKeyAsync(a.Id);
        var keyB = await _one.CreateKeyAsync(b.Id);
        const string job = "ftjob-shared-name"; // both tenants have a job of this id

        await using var aOnOne = await Follower.ConnectAsync(_one, keyA, job);
        await using var aOnTwo = await Follower.ConnectAsync(_two!, keyA, job);
        await using var bOnTwo = await Follower.ConnectAsync(_two!, keyB, job);
        await bOnTwo.Connection.InvokeAsync(nameof(JobsHub.SubscribeTenant));

        for (var i = 1; i <= 50; i++) await Publisher.PublishAsync(a.Id, job, "step", new { step = i, owner = "a" });
        for (var i = 1; i <= 5; i++) await Publisher.PublishAsync(b.Id, job, "step", new { step = i, owner = "b" });

        Assert.True(await JobsDatabase.UntilAsync(() => Task.FromResult(aOnOne.Count >= 50 && aOnTwo.Count >= 50 && bOnTwo.Count >= 5), TimeSpan.FromSeconds(30)),
            $"received {aOnOne.Count}, {aOnTwo.Count}, {bOnTwo.Count}");
        await Task.Delay(500); // anything that should not arrive has had time to
        foreach (var f in new[] { aOnOne, aOnTwo })
        {
            Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), f.Seqs);
            Assert.All(f.Events, e => Assert.Equal("a", e.Payload.GetProperty("owner").GetString()));
            Assert.Equal(0, f.Duplicates);
        }
        Assert.Equal([1L, 2, 3, 4, 5], bOnTwo.Seqs);
        Assert.All(bOnTwo.Raw, e => Assert.Equal("b", e.Payload.GetProperty("owner").GetString()));

        // Asking for the other tenant's events by job id gives the caller's own.
        var backlog = await bOnTwo.Connection.InvokeAsync<JobEventBatch>(nameof(JobsHub.GetEvents), job, 0L);
        Assert.All(backlog.Events, e => Assert.Equal("b", e.Payload.GetProperty("owner").GetString()));
    }

    [Fact]
    public async Task AClientThatDropsMidStreamResumesFromItsLastSequenceNumberWithoutGaps()
    {
        var a = await _one!.CreateTenantAsync("resume");
        var key = await _one.CreateKeyAsync(a.Id);
        const string job = "ftjob-resume";
        const int total = 120;

        var follower = await Follower.ConnectAsync(_one, key, job);
        using var stop = new CancellationTokenSource();
        var publishing = Task.Run(async () =>
        {
            for (var i = 1; i <= total; i++)
            {
                await Publisher.PublishAsync(a.Id, job, "step", new { step = i });
                await Task.Delay(5);
            }
        });
        Assert.True(await JobsDatabase.UntilAsync(() => Task.FromResult(follower.Count >= 20), TimeSpan.FromSeconds(30)));
        var seen = follower.Seqs.ToList();
        await follower.DisposeAsync(); // the connection drops while events keep coming
        await Task.Delay(300);

        // Back on the other node, from the last number it saw.
        await using var resumed = await Follower.ConnectAsync(_two!, key, job, seen.Count == 0 ? 0 : seen[^1], seen);
        await publishing;
        Assert.True(await JobsDatabase.UntilAsync(() => Task.FromResult(resumed.Count >= total), TimeSpan.FromSeconds(30)), $"got {resumed.Count}");
        Assert.Equal(Enumerable.Range(1, total).Select(i => (long)i), resumed.Seqs);
        Assert.All(resumed.Events, e => Assert.Equal(e.Seq, e.Payload.GetProperty("step").GetInt64()));
    }

    /// <summary>
    /// A hub client following one job as a real client should: keeps its last sequence number, drops repeats,
    /// fetches what it missed when a number is skipped, and subscribes again from its last number on "resync".
    /// </summary>
    private sealed class Follower : IAsyncDisposable
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private readonly List<JobEventMessage> _events = [];
        private readonly ConcurrentQueue<JobEventMessage> _raw = new();
        private readonly string _job;
        private long _last;

        public HubConnection Connection { get; }
        public int Duplicates { get; private set; }
        public int Count { get { lock (_events) return _events.Count; } }
        public List<JobEventMessage> Events { get { lock (_events) return [.. _events]; } }
        public List<long> Seqs => Events.Select(e => e.Seq).ToList();
        /// <summary>Every event as it arrived (tenant-group events included), before ordering.</summary>
        public List<JobEventMessage> Raw => [.. _raw];

        private Follower(HubConnection connection, string job, long after, IEnumerable<long> seen)
        {
            Connection = connection;
            _job = job;
            _last = after;
            lock (_events) _events.AddRange(seen.Select(s => new JobEventMessage(job, s, default, "seen", JsonDocument.Parse($"{{\"step\":{s}}}").RootElement)));
        }

        public static async Task<Follower> ConnectAsync(WebNode node, string key, string job, long after = 0, IEnumerable<long>? seen = null)
        {
            var connection = new HubConnectionBuilder()
                .WithUrl(new Uri(node.Server.BaseAddress, JobsHub.Path.TrimStart('/')), o =>
                {
                    o.HttpMessageHandlerFactory = _ => node.Server.CreateHandler();
                    o.Transports = HttpTransportType.LongPolling;
                    o.AccessTokenProvider = () => Task.FromResult<string?>(key);
                })
                .Build();
            var follower = new Follower(connection, job, after, seen ?? []);
            connection.On<JobEventMessage>(JobsHub.EventMethod, e => follower.OnEventAsync(e));
            connection.On(JobsHub.ResyncMethod, () => follower.CatchUpAsync(subscribe: true));
            await connection.StartAsync();
            await follower.CatchUpAsync(subscribe: true);
            return follower;
        }

        private async Task OnEventAsync(JobEventMessage e)
        {
            _raw.Enqueue(e);
            if (e.JobId != _job) return;
            await _gate.WaitAsync();
            try
            {
                if (e.Seq <= _last) { Duplicates++; return; }
                if (e.Seq == _last + 1) { Apply(e); return; }
            }
            finally { _gate.Release(); }
            await CatchUpAsync(subscribe: false); // a number was skipped: fetch what is missing
        }

        private async Task CatchUpAsync(bool subscribe)
        {
            await _gate.WaitAsync();
            try
            {
                var method = subscribe ? nameof(JobsHub.Subscribe) : nameof(JobsHub.GetEvents);
                JobEventBatch batch;
                do
                {
                    batch = await Connection.InvokeAsync<JobEventBatch>(method, _job, _last);
                    foreach (var e in batch.Events.Where(e => e.Seq == _last + 1)) Apply(e);
                    method = nameof(JobsHub.GetEvents);
                } while (batch.HasMore);
            }
            finally { _gate.Release(); }
        }

        private void Apply(JobEventMessage e)
        {
            lock (_events) _events.Add(e);
            _last = e.Seq;
        }

        public async ValueTask DisposeAsync() => await Connection.DisposeAsync();
    }
}
