namespace Loom.Inference.Memory;

/// <summary>Multi-turn reuse: the KV of finished sequences kept in host memory, keyed by tenant, adapter and the exact
/// tokens it covers, so that a next request of the same tenant and adapter whose prompt extends those tokens starts
/// from them instead of recomputing. Least recently used entries go first when the space (bounded in bytes) is full.
/// A lookup matches only entries of the same tenant and the same adapter: cached KV never crosses tenants. A hit takes
/// the entry out (its KV moves to the new sequence, and comes back here when that one finishes). Thread-safe.</summary>
public sealed class PrefixKvCache(KvSwapSpace space) : IDisposable
{
    private sealed record Entry(string Tenant, string? Adapter, int[] Tokens, SwappedKv Kv);

    private readonly LinkedList<Entry> _lru = new(); // most recently used first
    private readonly Lock _lock = new();
    private long _hits, _misses, _reused, _evictions, _tooLarge;

    public long Hits => Interlocked.Read(ref _hits);
    public long Misses => Interlocked.Read(ref _misses);
    /// <summary>Prompt tokens that hits did not have to compute.</summary>
    public long TokensReused => Interlocked.Read(ref _reused);
    public long Evictions => Interlocked.Read(ref _evictions);
    /// <summary>Puts refused because the KV alone is larger than the whole space.</summary>
    public long TooLarge => Interlocked.Read(ref _tooLarge);
    public long Bytes => space.UsedBytes;
    public int Count
    {
        get { lock (_lock) return _lru.Count; }
    }

    /// <summary>Keeps a copy of the cache's KV for (tenant, adapter, tokens) — tokens being what the cache holds,
    /// position by position — evicting the least recently used entries until it fits. Entries of the same tenant and
    /// adapter that this one extends are dropped (it supersedes them).</summary>
    public void Put(string tenant, string? adapter, ReadOnlySpan<int> tokens, PagedKvCache cache)
    {
        if (tokens.Length != cache.Length) throw new ArgumentException($"{tokens.Length} tokens for a cache of {cache.Length} positions", nameof(tokens));
        if (cache.Length == 0) return;
        // Larger than the whole space: evicting everything would still not make room, so nothing is stored or dropped.
        if (KvSwapSpace.BytesFor(cache) > space.CapacityBytes)
        {
            Interlocked.Increment(ref _tooLarge);
            return;
        }
        lock (_lock)
        {
            for (var n = _lru.First; n != null;)
            {
                var next = n.Next;
                var e = n.Value;
                if (e.Tenant == tenant && e.Adapter == adapter && e.Tokens.Length <= tokens.Length && tokens.StartsWith(e.Tokens))
                {
                    _lru.Remove(n);
                    space.Drop(e.Kv);
                }
                n = next;
            }
            var kv = space.SwapOut(cache);
            while (kv is null && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                space.Drop(last.Value.Kv);
                _evictions++;
                kv = space.SwapOut(cache);
            }
            if (kv is not null) _lru.AddFirst(new Entry(tenant, adapter, tokens.ToArray(), kv));
        }
    }

    /// <summary>The longest entry of this tenant and adapter whose tokens are a strict prefix of the prompt (at least
    /// one prompt token is left to compute), taken out of the cache; null when none.</summary>
    public SwappedKv? Take(string tenant, string? adapter, ReadOnlySpan<int> prompt)
    {
        lock (_lock)
        {
            LinkedListNode<Entry>? best = null;
            for (var n = _lru.First; n != null; n = n.Next)
            {
                var e = n.Value;
                if (e.Tenant != tenant || e.Adapter != adapter || e.Tokens.Length >= prompt.Length) continue;
                if ((best is null || e.Tokens.Length > best.Value.Tokens.Length) && prompt.StartsWith(e.Tokens)) best = n;
            }
            if (best is null)
            {
                _misses++;
                return null;
            }
            _lru.Remove(best);
            _hits++;
            _reused += best.Value.Tokens.Length;
            return best.Value.Kv;
        }
    }

    /// <summary>Drops every entry of an adapter (it was unregistered: its id may come back with other weights).</summary>
    public void Forget(string adapter)
    {
        lock (_lock)
            for (var n = _lru.First; n != null;)
            {
                var next = n.Next;
                if (n.Value.Adapter == adapter)
                {
                    _lru.Remove(n);
                    space.Drop(n.Value.Kv);
                }
                n = next;
            }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var e in _lru) space.Drop(e.Kv);
            _lru.Clear();
        }
        space.Dispose();
    }
}
