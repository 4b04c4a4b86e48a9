using System.Runtime.InteropServices;
using Loom.Inference.Model;

namespace Loom.Inference.Memory;

/// <summary>A sequence's KV cache in pool pages, read by the existing attention kernel through <see cref="IKvCache"/>.
/// Layout: a page holds the keys (or the values) of <see cref="BlockSize"/> consecutive tokens of one layer, so one block
/// of tokens takes 2 * layers pages: PageFloats / KvDim tokens in float32, twice as many in bfloat16 (<see cref="Format"/>:
/// the page's memory read as ushorts); the tail of a page is unused. A KV row above the page size (kv_heads * head_dim
/// elements larger than hidden_size floats) is refused: the block reads of <see cref="IKvCache"/> return one contiguous
/// span, which would then cross pages.
/// The page table is allocated once for the longest sequence; growing allocates pages, never managed memory.
/// Leading blocks may be shared (<see cref="PrefixBlockCache"/>): the page table points at cached pages that this cache
/// holds by reference and never writes (it writes only positions past <see cref="Length"/>, and a shared block is full).
/// Releasing gives its own pages back to the pool and lets go of the shared ones.</summary>
public sealed class PagedKvCache : IKvCache, IDisposable
{
    private readonly PagePool _pool;
    private readonly int[] _pages; // (maxBlocks, layers, 2) page ids: [block][layer][keys=0 | values=1]
    private readonly PrefixBlockCache.Block?[] _shared; // (maxBlocks) the cached block a block is, null: this cache's own pages
    private int _blocks, _sharedCount;

    public PageOwner Owner { get; }
    internal PagePool Pool => _pool;
    /// <summary>(blocks, layers, 2) page ids of the pages held, in the order above.</summary>
    internal ReadOnlySpan<int> PageTable => _pages.AsSpan(0, PagesHeld);
    public int BlockSize { get; }
    public int KvDim { get; }
    public int Layers { get; }
    public KvCacheFormat Format { get; }
    public int MaxTokens { get; }
    public int Length { get; private set; }
    public int Capacity => _blocks * BlockSize;
    /// <summary>Pages this cache holds now.</summary>
    public int PagesHeld => _blocks * Layers * 2;

    public PagedKvCache(PagePool pool, int sequenceId, int layers, int kvDim, int maxTokens, KvCacheFormat format = KvCacheFormat.F32)
    {
        if (!Enum.IsDefined(format)) throw new ArgumentOutOfRangeException(nameof(format));
        if (format.BlockTokens(pool.PageFloats, kvDim) < 1)
            throw new NotSupportedException($"KV width {kvDim} in {format.Name()} is larger than a page ({pool.PageBytes} bytes); paged KV needs kv_heads*head_dim elements to fit in hidden_size floats");
        _pool = pool;
        Owner = PageOwner.Kv(sequenceId);
        Layers = layers;
        KvDim = kvDim;
        Format = format;
        MaxTokens = maxTokens;
        BlockSize = format.BlockTokens(pool.PageFloats, kvDim);
        int maxBlocks = (maxTokens + BlockSize - 1) / BlockSize;
        _pages = new int[maxBlocks * layers * 2];
        _shared = new PrefixBlockCache.Block?[maxBlocks];
    }

    public static PagedKvCache For(PagePool pool, ModelConfig config, int sequenceId, int maxTokens, KvCacheFormat format = KvCacheFormat.F32) =>
        new(pool, sequenceId, config.NumLayers, config.KvDim, maxTokens, format);

    /// <summary>Pages needed to hold <paramref name="tokens"/> positions from empty in <paramref name="format"/> (for
    /// admission decisions).</summary>
    public static int PagesFor(ModelConfig config, int pageFloats, int tokens, KvCacheFormat format = KvCacheFormat.F32)
    {
        int bs = format.BlockTokens(pageFloats, config.KvDim);
        return (tokens + bs - 1) / bs * config.NumLayers * 2;
    }

    /// <summary>Additional pages that <see cref="TryReserve"/> would take for <paramref name="tokens"/> positions.</summary>
    public int PagesToReserve(int tokens) => Math.Max(0, (tokens + BlockSize - 1) / BlockSize - _blocks) * Layers * 2;

    /// <summary>Grows to hold <paramref name="tokens"/> positions; false (and nothing taken) if the pool lacks pages.</summary>
    public bool TryReserve(int tokens)
    {
        if (tokens > MaxTokens)
            throw new InvalidOperationException($"sequence of {tokens} tokens exceeds the cache limit of {MaxTokens}");
        int need = (tokens + BlockSize - 1) / BlockSize;
        if (need <= _blocks) return true;
        int per = Layers * 2;
        if (!_pool.TryAllocate(Owner, _pages.AsSpan(_blocks * per, (need - _blocks) * per))) return false;
        _blocks = need;
        return true;
    }

    public void Reserve(int tokens)
    {
        if (!TryReserve(tokens))
            throw new InvalidOperationException($"the page pool has {_pool.FreePages} free pages, fewer than the {PagesToReserve(tokens)} needed for {tokens} positions");
    }

    public Span<float> Keys(int layer, int block) => Format == KvCacheFormat.F32 ? Page(layer, block, 0)[..(BlockSize * KvDim)] : throw KvRows.WrongFormat(Format);

    public Span<float> Values(int layer, int block) => Format == KvCacheFormat.F32 ? Page(layer, block, 1)[..(BlockSize * KvDim)] : throw KvRows.WrongFormat(Format);

    public Span<ushort> Keys16(int layer, int block) => Page16(layer, block, 0);

    public Span<ushort> Values16(int layer, int block) => Page16(layer, block, 1);

    private Span<ushort> Page16(int layer, int block, int kv) =>
        Format == KvCacheFormat.Bf16 ? MemoryMarshal.Cast<float, ushort>(Page(layer, block, kv))[..(BlockSize * KvDim)] : throw KvRows.WrongFormat(Format);

    /// <summary>The whole (PageFloats) page of one layer's keys (kv 0) or values (kv 1) of a block.</summary>
    private Span<float> Page(int layer, int block, int kv)
    {
        if ((uint)block >= (uint)_blocks || (uint)layer >= (uint)Layers) throw new ArgumentOutOfRangeException(nameof(block));
        return _pool.Page(_pages[(block * Layers + layer) * 2 + kv]);
    }

    /// <summary>Bytes of a page that hold positions (BlockSize rows of KvDim elements); the rest is unused.</summary>
    public int PageBytesUsed => BlockSize * KvDim * Format.ElementBytes();

    public void Write(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values) =>
        KvRows.Store(this, layer, position, keys, values);

    public void Advance(int count)
    {
        if (Length + count > Capacity) throw new InvalidOperationException("advance past reserved capacity");
        Length += count;
    }

    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);

    /// <summary>Blocks that are shared cached blocks (held by reference, never written).</summary>
    public int SharedBlockCount => _sharedCount;

    /// <summary>The cached block that block <paramref name="block"/> is, or null when its pages are this cache's own.</summary>
    public PrefixBlockCache.Block? SharedBlock(int block) => (uint)block < (uint)_blocks ? _shared[block] : null;

    internal IEnumerable<PrefixBlockCache.Block> SharedBlocks()
    {
        for (int i = 0; i < _blocks; i++)
            if (_shared[i] is { } b) yield return b;
    }

    /// <summary>The (layers, 2) page ids of one block.</summary>
    internal ReadOnlySpan<int> BlockPages(int block)
    {
        if ((uint)block >= (uint)_blocks) throw new ArgumentOutOfRangeException(nameof(block));
        return _pages.AsSpan(block * Layers * 2, Layers * 2);
    }

    /// <summary>Appends a cached block, full, to an empty or wholly shared cache (the prefix cache takes the reference).</summary>
    internal void Adopt(PrefixBlockCache.Block b)
    {
        if (Length != _blocks * BlockSize || _sharedCount != _blocks) throw new InvalidOperationException("cached blocks go only at the start of a cache");
        if ((_blocks + 1) * BlockSize > MaxTokens) throw new InvalidOperationException($"a cached block would take the cache past its limit of {MaxTokens} tokens");
        b.Pages.CopyTo(_pages.AsSpan(_blocks * Layers * 2));
        _shared[_blocks++] = b;
        _sharedCount++;
        Length += BlockSize;
    }

    /// <summary>Block <paramref name="block"/>, full and this cache's own, has just become the cached block b.</summary>
    internal void Share(int block, PrefixBlockCache.Block b)
    {
        if ((block + 1) * BlockSize > Length) throw new InvalidOperationException("only a full block can be shared");
        _shared[block] = b;
        _sharedCount++;
    }

    /// <summary>Throws when the next position to write (<see cref="Length"/>) falls in a shared block.</summary>
    public void CheckWritable()
    {
        if (SharedBlock(Length / BlockSize) is not null) throw new InvalidOperationException($"position {Length} is in a shared block");
    }

    /// <summary>Returns every page of its own to the pool, lets go of the shared ones, and empties the cache (it can grow
    /// again).</summary>
    public void Release()
    {
        if (_sharedCount == 0) _pool.Free(Owner, _pages.AsSpan(0, PagesHeld));
        else
        {
            // the last blocks first: they join the cache's idle list first and so are evicted before the blocks their
            // hashes chain from
            int per = Layers * 2;
            for (int end = _blocks; end > 0;)
            {
                if (_shared[end - 1] is { } b)
                {
                    _shared[--end] = null;
                    b.Owner.Release(b);
                    continue;
                }
                int start = end - 1;
                while (start > 0 && _shared[start - 1] is null) start--;
                _pool.Free(Owner, _pages.AsSpan(start * per, (end - start) * per));
                end = start;
            }
            _sharedCount = 0;
        }
        _blocks = 0;
        Length = 0;
    }

    public void Dispose() => Release();
}
