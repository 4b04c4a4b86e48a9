using System.Collections.Concurrent;
using Loom.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Cluster.Nodes;

/// <summary>
/// An API node's view of the routing table: the nodes whose heartbeat is younger than Cluster:NodeTimeout (by the
/// database's clock), read again at most every Cluster:RefreshInterval when a request needs it. A node this process
/// failed to reach is set aside at once (until it restarts, or for one NodeTimeout), so new requests do not wait for
/// its heartbeat to age out. Also counts the requests this process has in flight on each node, by base model.
/// </summary>
public sealed class NodeDirectory(IServiceScopeFactory scopes, IOptions<ClusterOptions> options, TimeProvider clock)
{
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private readonly ConcurrentDictionary<string, (DateTimeOffset StartedAt, DateTimeOffset Until)> _unreachable = new();
    private readonly ConcurrentDictionary<string, StrongBox> _inFlight = new();
    private IReadOnlyList<LiveNode> _nodes = [];
    private DateTimeOffset _readAt = DateTimeOffset.MinValue;

    /// <summary>The live nodes serving <paramref name="baseModel"/>, without those set aside.</summary>
    public async Task<IReadOnlyList<LiveNode>> ServingAsync(string baseModel, CancellationToken ct)
    {
        await RefreshIfStaleAsync(ct);
        var now = clock.GetUtcNow();
        return _nodes.Where(n => n.Models.Contains(baseModel) && !SetAside(n, now)).ToList();
    }

    /// <summary>Every live node, without those set aside.</summary>
    public async Task<IReadOnlyList<LiveNode>> LiveAsync(CancellationToken ct)
    {
        await RefreshIfStaleAsync(ct);
        var now = clock.GetUtcNow();
        return _nodes.Where(n => !SetAside(n, now)).ToList();
    }

    /// <summary>Sets a node aside after a failed connection or a stream lost mid-way.</summary>
    public void MarkUnreachable(LiveNode node) =>
        _unreachable[node.Id] = (node.StartedAt, clock.GetUtcNow() + options.Value.NodeTimeout);

    /// <summary>Requests for <paramref name="baseModel"/> this process has running on the node (its heartbeat's figures
    /// lag by up to a beat).</summary>
    public int InFlight(string nodeId, string baseModel) => _inFlight.TryGetValue(Key(nodeId, baseModel), out var c) ? Volatile.Read(ref c.Value) : 0;

    public IDisposable Track(string nodeId, string baseModel)
    {
        var box = _inFlight.GetOrAdd(Key(nodeId, baseModel), _ => new StrongBox());
        Interlocked.Increment(ref box.Value);
        return new Release(box);
    }

    private bool SetAside(LiveNode n, DateTimeOffset now)
    {
        if (!_unreachable.TryGetValue(n.Id, out var mark)) return false;
        if (mark.StartedAt == n.StartedAt && now < mark.Until) return true;
        _unreachable.TryRemove(n.Id, out _); // it restarted, or the mark ran out
        return false;
    }

    private async Task RefreshIfStaleAsync(CancellationToken ct)
    {
        if (clock.GetUtcNow() - _readAt < options.Value.RefreshInterval) return;
        await _refresh.WaitAsync(ct);
        try
        {
            if (clock.GetUtcNow() - _readAt < options.Value.RefreshInterval) return;
            _nodes = await ReadLiveAsync(scopes, options.Value.NodeTimeout, ct);
            _readAt = clock.GetUtcNow();
        }
        finally { _refresh.Release(); }
    }

    /// <summary>The rows whose heartbeat is younger than <paramref name="timeout"/> by the database's clock.</summary>
    public static async Task<IReadOnlyList<LiveNode>> ReadLiveAsync(IServiceScopeFactory scopes, TimeSpan timeout, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var rows = await db.InferenceNodes.FromSql($"SELECT * FROM inference_nodes WHERE \"HeartbeatAt\" > now() - {timeout}")
            .AsNoTracking().ToListAsync(ct);
        return rows.Select(r => new LiveNode(r.Id, r.InternalUrl, r.Models, r.Running, r.Waiting, r.FreePages, r.ResidentAdapters, r.StartedAt, r.ModelLoads))
            .OrderBy(n => n.Id, StringComparer.Ordinal).ToList();
    }

    private static string Key(string nodeId, string baseModel) => $"{nodeId}\n{baseModel}";

    private sealed class StrongBox { public int Value; }

    private sealed class Release(StrongBox box) : IDisposable
    {
        private int _done;
        public void Dispose() { if (Interlocked.Exchange(ref _done, 1) == 0) Interlocked.Decrement(ref box.Value); }
    }
}
