using Loom.Inference.Memory;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>The block cache on its own: hash chains keyed by tenant and adapter, reference counts, least recently
/// released first eviction, swap of a cache holding shared blocks, and the audit catching what it must.</summary>
public sealed class PrefixBlockCacheTests
{
    private const int Layers = 2, KvDim = 4, PageFloats = 8, Block = PageFloats / KvDim; // 2 tokens, 4 pages per block

    private static PagedKvCache Cache(PagePool pool, int id) => new(pool, id, Layers, KvDim, maxTokens: 32);

    private static UInt128[] Hashes(string tenant, string? adapter, int[] tokens)
    {
        var h = new UInt128[tokens.Length / Block];
        for (int j = 0; j < h.Length; j++) h[j] = PrefixBlockCache.Chain(j == 0 ? 0 : h[j - 1], tenant, adapter, tokens.AsSpan(j * Block, Block));
        return h;
    }

    /// <summary>Fills a cache's positions with values derived from the sequence id and the position, then publishes
    /// its full blocks.</summary>
    private static void Compute(PrefixBlockCache blocks, PagedKvCache cache, string tenant, string? adapter, int[] tokens)
    {
        int from = cache.Length;
        cache.Reserve(tokens.Length);
        for (int pos = from; pos < tokens.Length; pos++)
            for (int l = 0; l < Layers; l++)
            {
                cache.Keys(l, pos / Block).Slice(pos % Block * KvDim, KvDim).Fill(tokens[pos] * 10 + l);
                cache.Values(l, pos / Block).Slice(pos % Block * KvDim, KvDim).Fill(-tokens[pos] * 10 - l);
            }
        cache.Advance(tokens.Length - from);
        var h = Hashes(tenant, adapter, tokens);
        for (int j = 0; j < h.Length; j++) blocks.Publish(cache, j, h[j], tenant, adapter, tokens.AsSpan(j * Block, Block));
    }

    [Fact]
    public void ChainsDifferByTenantAdapterTokensAndPrefix()
    {
        int[] t = [1, 2];
        var all = new[]
        {
            PrefixBlockCache.Chain(0, "a", null, t), PrefixBlockCache.Chain(0, "b", null, t), PrefixBlockCache.Chain(0, "a", "x", t),
            PrefixBlockCache.Chain(0, "a", "", t), PrefixBlockCache.Chain(0, "a", null, [2, 1]), PrefixBlockCache.Chain(1, "a", null, t),
            PrefixBlockCache.Chain(0, "ax", null, t), PrefixBlockCache.Chain(0, "a", "x", [1, 2, 3]),
        };
        Assert.Equal(all.Length, all.Distinct().Count());
        Assert.Equal(all[0], PrefixBlockCache.Chain(0, "a", null, t));
    }

    [Fact]
    public void SharedBlocksAreCountedReleasedAndEvictedLeastRecentlyReleasedFirst()
    {
        using var pool = new PagePool(64L * PageFloats * 4, PageFloats);
        var blocks = new PrefixBlockCache(pool, Block, Layers);
        int[] prompt = [1, 2, 3, 4, 5, 6, 7];
        var a = Cache(pool, 1);
        Compute(blocks, a, "t", null, prompt);
        Assert.Equal(3, blocks.Count);                           // the partial last block stays a's own
        Assert.Equal((12, 4), (pool.Usage.CachedPages, pool.Usage.KvPages));

        var b = Cache(pool, 2);
        var h = Hashes("t", null, prompt);
        Assert.Equal(3, blocks.Attach(b, h, "t", null, prompt));
        Assert.Equal((6, 3), (b.Length, b.SharedBlockCount));
        Assert.True(b.Keys(1, 2).SequenceEqual(a.Keys(1, 2)));    // the same pages
        Assert.Null(blocks.Audit([a, b]));
        Assert.NotNull(blocks.Audit([a]));                       // a holder missing: the counts disagree
        Assert.Throws<InvalidOperationException>(() => { b.Truncate(5); b.CheckWritable(); });
        Assert.Equal(0, blocks.EvictablePages);
        Assert.Equal(0, blocks.Evict(100));                      // held blocks are not evicted

        a.Release();
        Assert.Equal(0, pool.Usage.KvPages);
        Assert.Null(blocks.Audit([b]));
        b.Release();
        Assert.Equal(12, blocks.EvictablePages);
        Assert.Null(blocks.Audit([]));

        // the last block of the chain goes first
        Assert.Equal(4, blocks.Evict(1));
        Assert.Equal(2, blocks.Cached(h, "t", null, prompt));
        Assert.Equal(8, blocks.Evict(100));
        Assert.Equal(0, pool.Usage.CachedPages);
        Assert.Equal(pool.PageCount, pool.FreePages);
        Assert.Null(pool.Audit());
        Assert.Null(blocks.Audit([]));
    }

    [Fact]
    public void OtherTenantsAndAdaptersFindNothingAndAForgottenAdaptersHeldBlocksGoBackWithTheirLastHolder()
    {
        using var pool = new PagePool(64L * PageFloats * 4, PageFloats);
        var blocks = new PrefixBlockCache(pool, Block, Layers);
        int[] prompt = [1, 2, 3, 4];
        var a = Cache(pool, 1);
        Compute(blocks, a, "t", "x", prompt);
        Assert.Equal(0, blocks.Cached(Hashes("u", "x", prompt), "u", "x", prompt));
        Assert.Equal(0, blocks.Cached(Hashes("t", "y", prompt), "t", "y", prompt));
        Assert.Equal(0, blocks.Cached(Hashes("t", null, prompt), "t", null, prompt));
        // the right hash with the wrong key is refused as well
        Assert.Equal(0, blocks.Cached(Hashes("t", "x", prompt), "u", "x", prompt));
        Assert.Equal(2, blocks.Cached(Hashes("t", "x", prompt), "t", "x", prompt));

        blocks.Forget("x");
        Assert.Equal(0, blocks.Cached(Hashes("t", "x", prompt), "t", "x", prompt));
        Assert.Equal(8, pool.Usage.CachedPages);                 // still held by a
        Assert.Null(blocks.Audit([a]));
        a.Release();
        Assert.Equal(0, pool.Usage.CachedPages);
        Assert.Equal(pool.PageCount, pool.FreePages);
        Assert.Null(blocks.Audit([]));
    }

    [Fact]
    public void SwappingACacheThatHoldsSharedBlocksLeavesThemIntactAndRestoresIntoItsOwnPages()
    {
        using var pool = new PagePool(64L * PageFloats * 4, PageFloats);
        using var swap = new KvSwapSpace(pool, 1 << 16);
        var blocks = new PrefixBlockCache(pool, Block, Layers);
        int[] prompt = [1, 2, 3, 4, 5, 6];
        var a = Cache(pool, 1);
        Compute(blocks, a, "t", null, prompt);
        var b = Cache(pool, 2);
        blocks.Attach(b, Hashes("t", null, prompt)[..2], "t", null, prompt);
        Compute(blocks, b, "t", null, [1, 2, 3, 4, 9, 9, 9]);   // its own third block and a partial fourth
        var before = Enumerable.Range(0, 4).SelectMany(j => b.Keys(0, j).ToArray().Concat(b.Values(1, j).ToArray())).ToArray();
        var shared = a.Keys(0, 0).ToArray();

        var host = swap.SwapOut(b)!;
        b.Release();
        Assert.Null(blocks.Audit([a]));
        Assert.True(a.Keys(0, 0).SequenceEqual(shared));
        b.Reserve(host.Length);
        swap.SwapIn(host, b);
        Assert.Equal(0, b.SharedBlockCount);                     // restored into pages of its own
        var after = Enumerable.Range(0, 4).SelectMany(j => b.Keys(0, j).ToArray().Concat(b.Values(1, j).ToArray())).ToArray();
        Assert.Equal(before, after);
        Assert.Null(blocks.Audit([a, b]));
        Assert.Null(pool.Audit());
    }
}
