using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Loom.Inference.Model;

namespace Loom.Inference.Memory;

/// <summary>Automatic prefix caching on pool pages (vLLM's automatic prefix caching, BatchLLM's shared prefixes): full
/// KV blocks (one <see cref="PagedKvCache.BlockSize"/> of tokens, 2 × layers pages) keyed by a hash chain over (tenant,
/// adapter, the block's tokens, the previous block's hash), so a block is found only by a sequence of the same tenant and
/// adapter whose tokens up to and through it are the same. A sequence's page table points at the cached pages (no copy);
/// blocks are reference-counted, and a block nobody holds stays cached until the pool needs its pages: then the least
/// recently released go first. Cached pages are tagged <see cref="PageOwner.Cached"/> in the pool. A block is never
/// written once cached: sequences write only positions past what they hold, and a cached block is full.
/// Thread-safe (the engine loop uses it; unregistering an adapter forgets its blocks from another thread).</summary>
public sealed class PrefixBlockCache
{
    /// <summary>A cached block: its key, its pages ((layers, 2) page ids, as in a page table) and who holds it.</summary>
    public sealed class Block
    {
        internal Block(PrefixBlockCache owner, UInt128 hash, string tenant, string? adapter, int[] tokens, int[] pages)
        {
            Owner = owner;
            Hash = hash;
            Tenant = tenant;
            Adapter = adapter;
            Tokens = tokens;
            Pages = pages;
        }

        internal PrefixBlockCache Owner { get; }
        public UInt128 Hash { get; }
        public string Tenant { get; }
        public string? Adapter { get; }
        internal int[] Tokens { get; }
        internal int[] Pages { get; }  // (layers, 2)
        /// <summary>Sequences whose page tables point at this block.</summary>
        public int Refs { get; internal set; }
        internal LinkedListNode<Block>? Idle; // in the LRU list while nobody holds it
        internal bool Detached;               // forgotten (adapter unregistered): freed when the last holder lets go
    }

    private readonly PagePool _pool;
    private readonly int _blockTokens, _pagesPerBlock;
    private readonly Dictionary<UInt128, Block> _blocks = [];
    private readonly LinkedList<Block> _idle = []; // held by nobody, least recently released first
    private readonly Lock _lock = new();
    private int _detachedBlocks;
    private long _hits, _reused, _evicted;

    /// <param name="blockTokens">Positions of a block: a page's worth in <paramref name="format"/>
    /// (<see cref="KvCacheFormats.BlockTokens"/>); only caches of that block size and format share blocks.</param>
    public PrefixBlockCache(PagePool pool, int blockTokens, int layers, KvCacheFormat format = KvCacheFormat.F32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _pool = pool;
        Format = format;
        _blockTokens = blockTokens;
        _pagesPerBlock = layers * 2;
    }

    public int BlockTokens => _blockTokens;
    /// <summary>How the cached blocks' pages hold their keys and values.</summary>
    public KvCacheFormat Format { get; }
    /// <summary>Sequences that started from cached blocks.</summary>
    public long Hits => Interlocked.Read(ref _hits);
    /// <summary>Tokens those sequences did not compute.</summary>
    public long TokensReused => Interlocked.Read(ref _reused);
    /// <summary>Blocks whose pages were given back to the pool for others.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    public int Count
    {
        get { lock (_lock) return _blocks.Count; }
    }

    /// <summary>Pages of blocks nobody holds: what <see cref="Evict"/> can give back.</summary>
    public int EvictablePages
    {
        get { lock (_lock) return _idle.Count * _pagesPerBlock; }
    }

    /// <summary>The hash of a block: of the previous block's hash, the tenant, the adapter (null: the base model) and the
    /// block's tokens. SHA-256, cut to 128 bits: two different prefixes meet by chance with negligible probability, and a
    /// lookup compares the tenant, adapter and tokens of the block itself as well.</summary>
    public static UInt128 Chain(UInt128 previous, string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        int tenantBytes = Encoding.UTF8.GetByteCount(tenant), adapterBytes = adapter is null ? 0 : Encoding.UTF8.GetByteCount(adapter);
        int length = 16 + 4 + tenantBytes + 4 + adapterBytes + 4 * tokens.Length;
        byte[]? rented = length > 1024 ? new byte[length] : null;
        Span<byte> buffer = rented ?? stackalloc byte[length];
        BinaryPrimitives.WriteUInt128LittleEndian(buffer, previous);
        int at = 16;
        BinaryPrimitives.WriteInt32LittleEndian(buffer[at..], tenantBytes);
        at += 4 + Encoding.UTF8.GetBytes(tenant, buffer[(at + 4)..]);
        BinaryPrimitives.WriteInt32LittleEndian(buffer[at..], adapter is null ? -1 : adapterBytes);
        at += 4;
        if (adapter is not null) at += Encoding.UTF8.GetBytes(adapter, buffer[at..]);
        foreach (int t in tokens)
        {
            BinaryPrimitives.WriteInt32LittleEndian(buffer[at..], t);
            at += 4;
        }
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(buffer[..at], digest);
        return BinaryPrimitives.ReadUInt128LittleEndian(digest);
    }

    /// <summary>How many leading blocks of <paramref name="hashes"/> are cached for this tenant and adapter.</summary>
    public int Cached(ReadOnlySpan<UInt128> hashes, string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        lock (_lock)
        {
            int n = 0;
            while (n < hashes.Length && Find(hashes[n], tenant, adapter, tokens.Slice(n * _blockTokens, _blockTokens)) is not null) n++;
            return n;
        }
    }

    /// <summary>Points the empty <paramref name="cache"/> at the cached blocks of the leading <paramref name="hashes"/>
    /// (as many as are cached, in order), taking a reference on each. Returns the blocks attached.</summary>
    public int Attach(PagedKvCache cache, ReadOnlySpan<UInt128> hashes, string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        CheckShape(cache);
        lock (_lock)
        {
            int n = 0;
            while (n < hashes.Length && Find(hashes[n], tenant, adapter, tokens.Slice(n * _blockTokens, _blockTokens)) is { } b)
            {
                cache.Adopt(b);
                Hold(b);
                n++;
            }
            if (n > 0)
            {
                _hits++;
                _reused += n * _blockTokens;
            }
            return n;
        }
    }

    private void CheckShape(PagedKvCache cache)
    {
        if (cache.BlockSize != _blockTokens) throw new ArgumentException("the cache's block size differs from this cache's", nameof(cache));
        if (cache.Format != Format) throw new ArgumentException($"the cache stores {cache.Format.Name()} keys and values, this cache's blocks {Format.Name()}", nameof(cache));
    }

    /// <summary>Adds the cache's full block <paramref name="block"/> (tokens <paramref name="tokens"/>, hash
    /// <paramref name="hash"/>) to the cache: its pages become cached pages that the sequence holds by reference. False,
    /// with nothing changed, when that block is cached already (the sequence keeps its own copy) or is not the cache's
    /// own.</summary>
    public bool Publish(PagedKvCache cache, int block, UInt128 hash, string tenant, string? adapter, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != _blockTokens) throw new ArgumentException($"a block holds {_blockTokens} tokens", nameof(tokens));
        CheckShape(cache);
        lock (_lock)
        {
            if (_blocks.ContainsKey(hash) || cache.SharedBlock(block) is not null) return false;
            var pages = cache.BlockPages(block).ToArray();
            _pool.Transfer(cache.Owner, PageOwner.Cached, pages);
            var b = new Block(this, hash, tenant, adapter, tokens.ToArray(), pages) { Refs = 1 };
            _blocks.Add(hash, b);
            cache.Share(block, b);
            return true;
        }
    }

    /// <summary>A holder lets go of a block (its sequence's cache was released). A block nobody holds stays cached,
    /// evictable, unless it was forgotten: then its pages go back to the pool.</summary>
    internal void Release(Block b)
    {
        lock (_lock)
        {
            if (b.Refs <= 0) throw new InvalidOperationException("a cached block was released more often than held");
            if (--b.Refs > 0) return;
            if (b.Detached)
            {
                _detachedBlocks--;
                _pool.Free(PageOwner.Cached, b.Pages);
            }
            else b.Idle = _idle.AddLast(b);
        }
    }

    /// <summary>Gives back blocks nobody holds, least recently released first, until at least <paramref name="pages"/>
    /// pages are freed or none is left; returns the pages freed.</summary>
    public int Evict(int pages)
    {
        lock (_lock)
        {
            int freed = 0;
            while (freed < pages && _idle.First is { } node)
            {
                var b = node.Value;
                _idle.RemoveFirst();
                b.Idle = null;
                _blocks.Remove(b.Hash);
                _pool.Free(PageOwner.Cached, b.Pages);
                freed += b.Pages.Length;
                _evicted++;
            }
            return freed;
        }
    }

    /// <summary>Drops every block of an adapter (it was unregistered: its id may come back with other weights). Blocks
    /// still held are no longer found and go back to the pool when their last holder lets go.</summary>
    public void Forget(string adapter)
    {
        lock (_lock)
        {
            var gone = _blocks.Values.Where(b => b.Adapter == adapter).ToList();
            foreach (var b in gone)
            {
                _blocks.Remove(b.Hash);
                if (b.Idle is { } node)
                {
                    _idle.Remove(node);
                    b.Idle = null;
                    _pool.Free(PageOwner.Cached, b.Pages);
                }
                else
                {
                    b.Detached = true;
                    _detachedBlocks++;
                }
            }
        }
    }

    /// <summary>Checks this cache against the pool and its holders: the pool's cached pages are exactly the pages of
    /// the blocks here (found or forgotten but held), each tagged <see cref="PageOwner.Cached"/>; every block's
    /// reference count equals the caches in <paramref name="holders"/> that point at it; nobody holds an idle block.
    /// Returns the first violation or null. O(blocks + pages held): for tests and diagnostics.</summary>
    public string? Audit(IEnumerable<PagedKvCache> holders)
    {
        lock (_lock)
        {
            var counted = new Dictionary<Block, int>();
            foreach (var cache in holders)
                foreach (var b in cache.SharedBlocks())
                    counted[b] = counted.GetValueOrDefault(b) + 1;
            int detached = 0;
            foreach (var (b, n) in counted)
            {
                if (b.Refs != n) return $"block {b.Hash:x} has {b.Refs} references but {n} holders";
                if (b.Detached) detached++;
                else if (!_blocks.TryGetValue(b.Hash, out var found) || !ReferenceEquals(found, b)) return $"held block {b.Hash:x} is neither cached nor forgotten";
            }
            if (detached != _detachedBlocks) return $"{_detachedBlocks} forgotten blocks are counted, {detached} are held";
            foreach (var b in _blocks.Values)
            {
                if ((b.Refs == 0) != (b.Idle is not null)) return $"block {b.Hash:x} with {b.Refs} references is {(b.Idle is null ? "not " : "")}idle";
                if (b.Refs != counted.GetValueOrDefault(b)) return $"block {b.Hash:x} has {b.Refs} references but {counted.GetValueOrDefault(b)} holders";
                foreach (int page in b.Pages)
                    if (_pool.OwnerOf(page) != PageOwner.Cached) return $"page {page} of a cached block belongs to {_pool.OwnerOf(page)}";
            }
            int expected = (_blocks.Count + _detachedBlocks) * _pagesPerBlock;
            int inPool = _pool.Usage.CachedPages;
            return expected == inPool ? null : $"the pool counts {inPool} cached pages, the blocks hold {expected}";
        }
    }

    private Block? Find(UInt128 hash, string tenant, string? adapter, ReadOnlySpan<int> tokens) =>
        _blocks.TryGetValue(hash, out var b) && b.Tenant == tenant && b.Adapter == adapter && tokens.SequenceEqual(b.Tokens) ? b : null;

    private void Hold(Block b)
    {
        if (b.Idle is { } node)
        {
            _idle.Remove(node);
            b.Idle = null;
        }
        b.Refs++;
    }
}
