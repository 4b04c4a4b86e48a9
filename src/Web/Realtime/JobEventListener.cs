using System.Text.Json;
using System.Threading.Channels;
using Loom.Data;
using Loom.Data.Tenancy;
using Loom.Jobs.Events;
using Microsoft.AspNetCore.SignalR;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Loom.Web.Realtime;

/// <summary>
/// On every web node: LISTENs on <see cref="JobEventPublisher.Channel"/> over a connection of its own and fans each
/// job event out to the SignalR groups of its job and tenant, and to in-process subscribers (portal components).
/// When the connection drops it reconnects with backoff and asks clients to resubscribe, since notifications sent
/// while it was away are lost (the events themselves are in the table).
/// </summary>
public sealed class JobEventListener(
    IConfiguration configuration, IHubContext<JobsHub> hub, IServiceScopeFactory scopes, ILogger<JobEventListener> logger)
    : BackgroundService
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly Channel<string> _received = Channel.CreateBounded<string>(new BoundedChannelOptions(100_000)
    {
        SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.DropOldest,
    });

    /// <summary>Each event as it is fanned out, with its tenant. Handlers run on the listener's thread: keep them short.</summary>
    public event Action<Guid, JobEventMessage>? Received;

    /// <summary>True while the LISTEN connection is open.</summary>
    public bool Listening { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var fanOut = FanOutAsync(stoppingToken);
        var connectionString = new NpgsqlConnectionStringBuilder(configuration.GetConnectionString(DataModule.ConnectionStringName))
        {
            KeepAlive = 15, Pooling = false, Enlist = false,
        }.ConnectionString;
        var delay = TimeSpan.FromMilliseconds(250);
        var connectedBefore = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var conn = new NpgsqlConnection(connectionString);
                await conn.OpenAsync(stoppingToken);
                conn.Notification += (_, e) => _received.Writer.TryWrite(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {JobEventPublisher.Channel}", conn))
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                Listening = true;
                delay = TimeSpan.FromMilliseconds(250);
                if (connectedBefore)
                {
                    logger.LogInformation("Job event listener reconnected; asking clients to resubscribe");
                    await hub.Clients.All.SendAsync(JobsHub.ResyncMethod, stoppingToken);
                }
                connectedBefore = true;
                while (!stoppingToken.IsCancellationRequested) await conn.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
            catch (Exception e)
            {
                Listening = false;
                logger.LogWarning("Job event listener lost its database connection ({Message}); retrying in {Delay} ms", e.Message, delay.TotalMilliseconds);
                try { await Task.Delay(delay, stoppingToken); } catch (OperationCanceledException) { }
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
        Listening = false;
        _received.Writer.TryComplete();
        await fanOut;
    }

    private async Task FanOutAsync(CancellationToken ct)
    {
        await foreach (var payload in _received.Reader.ReadAllAsync(CancellationToken.None))
        {
            try
            {
                var n = JsonSerializer.Deserialize<JobEventNotification>(payload, Json);
                if (n is null) continue;
                var message = n.Event ?? await LoadAsync(n, ct);
                if (message is null) continue;
                await hub.Clients.Groups([JobsHub.JobGroup(n.TenantId, n.JobId), JobsHub.TenantGroup(n.TenantId)])
                    .SendAsync(JobsHub.EventMethod, message, ct);
                Received?.Invoke(n.TenantId, message);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                logger.LogWarning(e, "Could not fan out a job event notification");
            }
        }
    }

    private async Task<JobEventMessage?> LoadAsync(JobEventNotification n, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = n.TenantId;
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var row = await db.JobEvents.AsNoTracking().SingleOrDefaultAsync(e => e.JobId == n.JobId && e.Seq == n.Seq, ct);
        return row is null ? null : JobEventRows.ToMessage(row);
    }
}
