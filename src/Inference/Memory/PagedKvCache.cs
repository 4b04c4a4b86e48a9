using Loom.Inference.Model;

namespace Loom.Inference.Memory;

/// <summary>A sequence's KV cache in pool pages, read by the existing attention kernel through <see cref="IKvCache"/>.
/// Layout: a page holds the keys (or the values) of <see cref="BlockSize"/> = PageFloats / KvDim consecutive tokens
/// of one layer, so one block of tokens takes 2 * layers pages; the tail of a page (PageFloats mod KvDim floats) is
/// unused. A KV width above the page size (kv_heads * head_dim > hidden_size) is refused: the block reads of
/// <see cref="IKvCache"/> return one contiguous span, which would then cross pages.
/// The page table is allocated once for the longest sequence; growing allocates pages, never managed memory.</summary>
public sealed class PagedKvCache : IKvCache, IDisposable
{
    private readonly PagePool _pool;
    private readonly int[] _pages; // (maxBlocks, layers, 2) page ids: [block][layer][keys=0 | values=1]
    private int _blocks;

    public PageOwner Owner { get; }
    internal PagePool Pool => _pool;
    /// <summary>(blocks, layers, 2) page ids of the pages held, in the order above.</summary>
    internal ReadOnlySpan<int> PageTable => _pages.AsSpan(0, PagesHeld);
    public int BlockSize { get; }
    public int KvDim { get; }
    public int Layers { get; }
    public int MaxTokens { get; }
    public int Length { get; private set; }
    public int Capacity => _blocks * BlockSize;
    /// <summary>Pages this cache holds now.</summary>
    public int PagesHeld => _blocks * Layers * 2;

    public PagedKvCache(PagePool pool, int sequenceId, int layers, int kvDim, int maxTokens)
    {
        if (kvDim > pool.PageFloats)
            throw new NotSupportedException($"KV width {kvDim} is larger than a page ({pool.PageFloats} floats); paged KV needs kv_heads*head_dim <= hidden_size");
        _pool = pool;
        Owner = PageOwner.Kv(sequenceId);
        Layers = layers;
        KvDim = kvDim;
        MaxTokens = maxTokens;
        BlockSize = pool.PageFloats / kvDim;
        _pages = new int[(maxTokens + BlockSize - 1) / BlockSize * layers * 2];
    }

    public static PagedKvCache For(PagePool pool, ModelConfig config, int sequenceId, int maxTokens) =>
        new(pool, sequenceId, config.NumLayers, config.KvDim, maxTokens);

    /// <summary>Pages needed to hold <paramref name="tokens"/> positions from empty (for admission decisions).</summary>
    public static int PagesFor(ModelConfig config, int pageFloats, int tokens)
    {
        int bs = pageFloats / config.KvDim;
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

    public Span<float> Keys(int layer, int block) => Page(layer, block, 0);

    public Span<float> Values(int layer, int block) => Page(layer, block, 1);

    private Span<float> Page(int layer, int block, int kv)
    {
        if ((uint)block >= (uint)_blocks || (uint)layer >= (uint)Layers) throw new ArgumentOutOfRangeException(nameof(block));
        return _pool.Page(_pages[(block * Layers + layer) * 2 + kv])[..(BlockSize * KvDim)];
    }

    public void Advance(int count)
    {
        if (Length + count > Capacity) throw new InvalidOperationException("advance past reserved capacity");
        Length += count;
    }

    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);

    /// <summary>Returns every page to the pool and empties the cache (it can grow again).</summary>
    public void Release()
    {
        _pool.Free(Owner, _pages.AsSpan(0, PagesHeld));
        _blocks = 0;
        Length = 0;
    }

    public void Dispose() => Release();
}
