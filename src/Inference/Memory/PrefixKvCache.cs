namespace Loom.Inference.Memory;

/// <summary>Multi-turn reuse: the KV of finished sequences kept in host memory, keyed by tenant, adapter and the exact
/// tokens it covers, so that a next request of the same tenant and adapter whose prompt extends those tokens starts
/// from them instead of recomputing. Least recently used entries go first when the space (bounded in bytes) is full.
/// A lookup matches only entries of the same tenant and the same adapter: cached KV never crosses tenants. A hit takes
/// the entry out (its KV moves to the new sequence, and comes back here when that one finishes), unless the entry is
/// pinned for several sequences of one prompt (<see cref="Pin"/>, the n choices of a request): then each hit but the
/// last gets a copy. Thread-safe.</summary>
public sealed class PrefixKvCache(KvSwapSpace space) : IDisposable
{
    internal sealed record Entry(string Tenant, string? Adapter, int[] Tokens, SwappedKv Kv)
    {
        /// <summary>Hits still to come that share this entry (pinned: more than one); the last one takes it.</summary>
        public int Shares { get; set; }
    }

    private readonly LinkedList<Entry> _lru = new(); // most recently used first
    private readonly List<PendingPut> _pending = []; // puts whose copy has not finished: neither found nor evicted
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
    public void Put(string tenant, string? adapter, ReadOnlySpan<int> tokens, PagedKvCache cache) =>
        BeginPut(tenant, adapter, tokens, cache)?.Copy(parallel: true);

    /// <summary><see cref="Put"/> in two steps: this one reserves the host buffer (evicting and superseding as Put
    /// does); <see cref="PendingPut.Copy"/> copies the KV, on any thread, and the entry joins the cache then. The cache's
    /// pages must stay untouched until Copy returns. Null when nothing is to be stored (an empty cache, or one larger
    /// than the whole space).</summary>
    public PendingPut? BeginPut(string tenant, string? adapter, ReadOnlySpan<int> tokens, PagedKvCache cache)
    {
        if (tokens.Length != cache.Length) throw new ArgumentException($"{tokens.Length} tokens for a cache of {cache.Length} positions", nameof(tokens));
        if (cache.Length == 0) return null;
        // Larger than the whole space: evicting everything would still not make room, so nothing is stored or dropped.
        if (KvSwapSpace.BytesFor(cache) > space.CapacityBytes)
        {
            Interlocked.Increment(ref _tooLarge);
            return null;
        }
        lock (_lock)
        {
            DropSuperseded(tenant, adapter, tokens);
            var kv = space.BeginSwapOut(cache);
            while (kv is null && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                space.Drop(last.Value.Kv);
                _evictions++;
                kv = space.BeginSwapOut(cache);
            }
            if (kv is null) return null;
            var put = new PendingPut(this, new Entry(tenant, adapter, tokens.ToArray(), kv), cache);
            _pending.Add(put);
            return put;
        }
    }

    /// <summary>Whether a put of this tenant and adapter is still copying (a next turn waits for it to find its KV).</summary>
    public bool IsPutPending(string tenant, string? adapter)
    {
        lock (_lock)
        {
            foreach (var p in _pending)
                if (p.Entry.Tenant == tenant && p.Entry.Adapter == adapter) return true;
            return false;
        }
    }

    /// <summary>A put whose host buffer is reserved and whose copy is still to run.</summary>
    public sealed class PendingPut
    {
        private readonly PrefixKvCache _owner;
        private readonly PagedKvCache _cache;
        internal readonly Entry Entry;
        internal bool Forgotten; // its adapter was unregistered meanwhile: dropped once copied

        internal PendingPut(PrefixKvCache owner, Entry entry, PagedKvCache cache)
        {
            _owner = owner;
            Entry = entry;
            _cache = cache;
        }

        /// <summary>Copies the KV into the reserved buffer and adds the entry to the cache (its buffer is freed if the
        /// copy fails). Any thread; once.</summary>
        public void Copy(bool parallel = false)
        {
            try { _owner.CopyOut(_cache, Entry.Kv, parallel); }
            catch
            {
                _owner.Complete(this, copied: false);
                throw;
            }
            _owner.Complete(this, copied: true);
        }
    }

    private void CopyOut(PagedKvCache cache, SwappedKv kv, bool parallel) => space.CopyOut(cache, kv, parallel);

    private void Complete(PendingPut put, bool copied)
    {
        lock (_lock)
        {
            _pending.Remove(put);
            var e = put.Entry;
            if (!copied || put.Forgotten)
            {
                space.Drop(e.Kv);
                return;
            }
            DropSuperseded(e.Tenant, e.Adapter, e.Tokens); // entries put meanwhile that this one extends
            _lru.AddFirst(e);
        }
    }

    private void DropSuperseded(string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        for (var n = _lru.First; n != null;)
        {
            var next = n.Next;
            var e = n.Value;
            if (e.Tenant == tenant && e.Adapter == adapter && e.Shares <= 1 && e.Tokens.Length <= tokens.Length && tokens.StartsWith(e.Tokens))
            {
                _lru.Remove(n);
                space.Drop(e.Kv);
            }
            n = next;
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
            _hits++;
            _reused += best.Value.Tokens.Length;
            if (best.Value.Shares > 1 && space.Copy(best.Value.Kv) is { } copy)
            {
                best.Value.Shares--;
                return copy;
            }
            _lru.Remove(best);
            return best.Value.Kv;
        }
    }

    /// <summary>Pins the entry of exactly these tokens (stored, or still being copied in) for <paramref name="shares"/>
    /// hits, the choices of one prompt: each hit but the last gets a copy of its KV, and a finishing sequence does not
    /// supersede it meanwhile. False when there is no such entry (it was too large, evicted, or taken).</summary>
    public bool Pin(string tenant, string? adapter, ReadOnlySpan<int> tokens, int shares)
    {
        lock (_lock)
        {
            if (Exact(tenant, adapter, tokens) is not { } e) return false;
            e.Shares = shares;
            return true;
        }
    }

    /// <summary>Ends a pin: the entry, if still here, is an ordinary one again.</summary>
    public void Unpin(string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        lock (_lock)
            if (Exact(tenant, adapter, tokens) is { } e) e.Shares = 0;
    }

    private Entry? Exact(string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        foreach (var e in _lru.Concat(_pending.Select(p => p.Entry)))
            if (e.Tenant == tenant && e.Adapter == adapter && tokens.SequenceEqual(e.Tokens)) return e;
        return null;
    }

    /// <summary>Drops every entry of an adapter (it was unregistered: its id may come back with other weights).</summary>
    public void Forget(string adapter)
    {
        lock (_lock)
        {
            foreach (var p in _pending)
                if (p.Entry.Adapter == adapter) p.Forgotten = true;
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
    }

    /// <summary>Frees every entry and the space. Pending puts must have been copied (or failed) first.</summary>
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
