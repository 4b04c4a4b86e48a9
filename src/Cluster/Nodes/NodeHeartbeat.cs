using Loom.Data;
using Loom.Inference.Engine;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Cluster.Nodes;

/// <summary>
/// An inference node's registration: every Cluster:HeartbeatInterval it upserts its row in <c>inference_nodes</c>
/// (URL, models served, load from its engines) stamped with the database's <c>now()</c>; on a graceful stop it deletes
/// the row. A node that dies simply stops beating and leaves the routing table after Cluster:NodeTimeout.
/// </summary>
public sealed class NodeHeartbeat(IServiceScopeFactory scopes, ServedEngines engines, IOptions<ClusterOptions> options, NodeIdentity identity,
    TimeProvider clock, ILogger<NodeHeartbeat> logger) : BackgroundService
{
    private long _lastBeatTicks;

    /// <summary>Whether the last heartbeat was written within a node timeout (readiness).</summary>
    public bool Registered
    {
        get
        {
            var last = Interlocked.Read(ref _lastBeatTicks);
            return last != 0 && clock.GetUtcNow().UtcTicks - last < options.Value.NodeTimeout.Ticks;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        using var timer = new PeriodicTimer(o.HeartbeatInterval, clock);
        var failing = false;
        do
        {
            try
            {
                await BeatAsync(stoppingToken);
                Interlocked.Exchange(ref _lastBeatTicks, clock.GetUtcNow().UtcTicks);
                if (failing) logger.LogInformation("Inference node {Node} registered again", identity.Id);
                failing = false;
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                if (!failing) logger.LogWarning("Inference node {Node} could not write its heartbeat: {Reason}", identity.Id, e.Message);
                failing = true;
            }
        }
        while (await Wait(timer, stoppingToken));
    }

    private static async Task<bool> Wait(PeriodicTimer timer, CancellationToken ct)
    {
        try { return await timer.WaitForNextTickAsync(ct); }
        catch (OperationCanceledException) { return false; }
    }

    private async Task BeatAsync(CancellationToken ct)
    {
        // One row per node: the models of all its engines with each engine's load (routing weighs the engine a request
        // goes to), and the node's figures added up.
        var metrics = engines.All.Select(e => e.GetMetrics()).ToList();
        string[] models = [.. engines.All.Select(e => e.Model.Name)];
        int[] loads = [.. metrics.Select(m => m.Loop.Running + m.Loop.Waiting)];
        var (running, waiting) = (metrics.Sum(m => m.Loop.Running), metrics.Sum(m => m.Loop.Waiting));
        var (free, resident) = (metrics.Sum(m => m.Pool.FreePages), metrics.Sum(m => m.Adapters.InPool));
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var url = options.Value.AdvertisedOrInternalUrl;
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO inference_nodes ("Id", "InternalUrl", "Models", "ModelLoads", "Running", "Waiting", "FreePages", "ResidentAdapters", "StartedAt", "HeartbeatAt")
            VALUES ({identity.Id}, {url}, {models}, {loads}, {running}, {waiting}, {free}, {resident}, {identity.StartedAt}, now())
            ON CONFLICT ("Id") DO UPDATE SET "InternalUrl" = EXCLUDED."InternalUrl", "Models" = EXCLUDED."Models", "ModelLoads" = EXCLUDED."ModelLoads", "Running" = EXCLUDED."Running",
                "Waiting" = EXCLUDED."Waiting", "FreePages" = EXCLUDED."FreePages", "ResidentAdapters" = EXCLUDED."ResidentAdapters",
                "StartedAt" = EXCLUDED."StartedAt", "HeartbeatAt" = now()
            """, ct);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
            await db.Database.ExecuteSqlAsync($"DELETE FROM inference_nodes WHERE \"Id\" = {identity.Id}", cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning("Inference node {Node} could not leave the routing table: {Reason}", identity.Id, e.Message);
        }
    }
}

/// <summary>This process's node id and start time (a restarted node with the same id is told apart by it).</summary>
public sealed class NodeIdentity(IOptions<ClusterOptions> options, TimeProvider clock)
{
    public DateTimeOffset StartedAt { get; } = clock.GetUtcNow();
    public string Id { get; } = options.Value.NodeId is { Length: > 0 } id ? id : $"{Environment.MachineName}-{Environment.ProcessId}-{clock.GetUtcNow().ToUnixTimeMilliseconds():x}";
}
