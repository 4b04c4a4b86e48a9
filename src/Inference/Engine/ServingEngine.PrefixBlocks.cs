using System.Runtime.InteropServices;
using Loom.Inference.Memory;
using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    // ---- automatic prefix caching (Inference:PrefixCaching) ---------------------------------------------------

    private readonly Dictionary<UInt128, Request> _claims = []; // full prompt blocks a running sequence is computing (loop thread)

    /// <summary>Before admission: a fresh sequence (or one preempted by recompute) of a tenant starts from the leading
    /// full blocks of its tokens that are cached for its tenant and adapter, short of its last token (whose logits it
    /// needs). While a running sequence is computing the next block it would need, it waits for that (NotYet) rather than
    /// computing the same prefix again; otherwise it claims the full blocks of its prompt that it is going to compute.</summary>
    private Reservation AttachCached(Request r)
    {
        var s = r.Sequence;
        if (_blocks is null || s.TenantId is not { } tenant || s.Computed != 0 || r.Cache.Length != 0 || r.Swap != SwapState.None)
            return Reservation.Reserved;
        int bt = _blocks.BlockTokens, usable = (s.TokenCount - 1) / bt, own = s.TokenCount / bt;
        HashBlocks(r, own);
        var hashes = CollectionsMarshal.AsSpan(r.BlockHashes);
        int cached = _blocks.Cached(hashes[..usable], tenant, s.AdapterId, s.Tokens(0, usable * bt));
        if (cached < usable && _claims.TryGetValue(hashes[cached], out var other) && other != r && !other.Closed
            && other.Sequence.Status == SequenceStatus.Running)
            return Reservation.NotYet;
        int attached = _blocks.Attach(r.Cache, hashes[..cached], tenant, s.AdapterId, s.Tokens(0, cached * bt));
        s.Computed = attached * bt;
        r.Published = attached;
        for (int j = attached; j < own; j++) _claims[hashes[j]] = r;
        return Reservation.Reserved;
    }

    /// <summary>After a forward pass: the blocks of the request that became full join the block cache (those that are
    /// cached already stay its own), and its claims on them end.</summary>
    private void PublishBlocks(Request r)
    {
        var s = r.Sequence;
        if (_blocks is null || r.Closed || s.TenantId is not { } tenant || s.Status != SequenceStatus.Running || r.Swap != SwapState.None) return;
        int bt = _blocks.BlockTokens, full = r.Cache.Length / bt;
        if (r.Published > full) r.Published = 0;
        if (full == r.Published) return;
        HashBlocks(r, full);
        for (int j = r.Published; j < full; j++)
        {
            var hash = r.BlockHashes[j];
            if (r.Cache.SharedBlock(j) is null) _blocks.Publish(r.Cache, j, hash, tenant, s.AdapterId, s.Tokens(j * bt, bt));
            if (_claims.TryGetValue(hash, out var c) && c == r) _claims.Remove(hash);
        }
        r.Published = full;
    }

    /// <summary>Ends the request's claims (it left the batch: preempted, finished, cancelled).</summary>
    private void DropClaims(Request r)
    {
        if (_claims.Count == 0) return;
        foreach (var h in r.BlockHashes)
            if (_claims.TryGetValue(h, out var c) && c == r) _claims.Remove(h);
    }

    /// <summary>Extends the request's hash chain to its first <paramref name="blocks"/> full blocks.</summary>
    private void HashBlocks(Request r, int blocks)
    {
        var s = r.Sequence;
        int bt = _blocks!.BlockTokens;
        for (int j = r.BlockHashes.Count; j < blocks; j++)
            r.BlockHashes.Add(PrefixBlockCache.Chain(j == 0 ? UInt128.Zero : r.BlockHashes[j - 1], s.TenantId!, s.AdapterId, s.Tokens(j * bt, bt)));
    }

    /// <summary>Pages of cached blocks nobody holds: the pool can have them back before anyone is preempted.</summary>
    private int EvictablePages => _blocks?.EvictablePages ?? 0;

    /// <summary>Frees idle cached blocks, least recently used first, so that <paramref name="need"/> pages are free or
    /// reclaimable from idle adapters (those go first: <see cref="Adapters.AdapterStore.MakeRoom"/>).</summary>
    private void EvictCachedFor(int need, int reclaimable)
    {
        int missing = need - _pool.FreePages - reclaimable;
        if (missing > 0) _blocks?.Evict(missing);
    }

    /// <summary>Tests only: the block cache's audit against every request that holds pages (call while the loop is idle).</summary>
    internal string? AuditPrefixBlocks() =>
        _blocks?.Audit(_scheduler.Running.Concat(_scheduler.Waiting).Select(s => ((Request)s.Handle!).Cache)
            .Concat(_copies.Select(r => r.Cache)).Distinct());

    internal PrefixBlockCache? PrefixBlocks => _blocks;
}
