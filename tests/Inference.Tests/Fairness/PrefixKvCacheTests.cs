using Loom.Inference.Memory;

namespace Loom.Inference.Tests.Fairness;

/// <summary>The multi-turn prefix cache on its own: entries match only the same tenant and adapter and a strict
/// prefix of the prompt, the longest wins, a hit takes the entry out, LRU eviction by bytes.</summary>
public sealed class PrefixKvCacheTests : IDisposable
{
    private readonly PagePool _pool = new(4096 * 64 * sizeof(float), 64);
    private int _ids;

    public void Dispose() => _pool.Dispose();

    /// <summary>A cache holding the given tokens, each position filled with its token id.</summary>
    private PagedKvCache Filled(int[] tokens)
    {
        var c = new PagedKvCache(_pool, ++_ids, 2, 16, 64);
        c.Reserve(tokens.Length);
        for (int layer = 0; layer < 2; layer++)
            for (int pos = 0; pos < tokens.Length; pos++)
            {
                c.Keys(layer, pos / c.BlockSize).Slice(pos % c.BlockSize * 16, 16).Fill(tokens[pos]);
                c.Values(layer, pos / c.BlockSize).Slice(pos % c.BlockSize * 16, 16).Fill(-tokens[pos]);
            }
        c.Advance(tokens.Length);
        return c;
    }

    private static PrefixKvCache NewCache(PagePool pool, long bytes) => new(new KvSwapSpace(pool, bytes));

    [Fact]
    public void IdenticalPromptsOfAnotherTenantOrAdapterNeverGetTheEntry()
    {
        using var p = NewCache(_pool, 1 << 20);
        int[] turn1 = [5, 6, 7, 8, 9];
        var c = Filled(turn1);
        p.Put("a", "lora1", turn1, c);
        c.Release();
        int[] turn2 = [5, 6, 7, 8, 9, 10, 11];
        Assert.Null(p.Take("b", "lora1", turn2));
        Assert.Null(p.Take("a", null, turn2));
        Assert.Null(p.Take("a", "lora2", turn2));
        Assert.Null(p.Take("a", "lora1", turn1));          // the whole prompt cached: nothing left to compute
        Assert.Null(p.Take("a", "lora1", [5, 6, 7, 0, 9, 10]));
        Assert.Equal((0L, 5L), (p.Hits, p.Misses));

        var kv = p.Take("a", "lora1", turn2);
        Assert.NotNull(kv);
        Assert.Equal(turn1.Length, kv.Length);
        Assert.Equal((1L, 5L, 0), (p.Hits, (long)turn1.Length, p.Count));
        Assert.Equal(5, p.TokensReused);

        // the bytes come back intact
        var d = new PagedKvCache(_pool, ++_ids, 2, 16, 64);
        d.Reserve(turn2.Length);
        kv.Owner.SwapIn(kv, d);
        for (int pos = 0; pos < turn1.Length; pos++)
            Assert.Equal(turn1[pos], d.Keys(1, pos / d.BlockSize)[pos % d.BlockSize * 16]);
        d.Release();
        Assert.Null(_pool.Audit());
    }

    [Fact]
    public void TheLongestMatchWinsAndALongerTurnSupersedesItsPrefix()
    {
        using var p = NewCache(_pool, 1 << 20);
        var c1 = Filled([1, 2, 3]);
        p.Put("a", null, [1, 2, 3], c1);
        var other = Filled([1, 9]);
        p.Put("a", null, [1, 9], other);
        Assert.Equal(2, p.Count);
        var c2 = Filled([1, 2, 3, 4, 5]);
        p.Put("a", null, [1, 2, 3, 4, 5], c2); // supersedes [1, 2, 3], not [1, 9]
        Assert.Equal(2, p.Count);
        Assert.Equal(5, p.Take("a", null, [1, 2, 3, 4, 5, 6])!.Length);
        Assert.Null(p.Take("a", null, [1, 2, 3, 4]));
        Assert.Equal(2, p.Take("a", null, [1, 9, 9])!.Length);
    }

    [Fact]
    public void LeastRecentlyUsedEntriesAreEvictedToStayWithinTheBytes()
    {
        var probe = Filled([1, 2, 3, 4]);
        long one = new KvSwapSpace(_pool, 1 << 20).SwapOut(probe)!.Bytes;
        using var p = NewCache(_pool, 2 * one);
        p.Put("a", null, [1, 2, 3, 4], probe);
        p.Put("b", null, [1, 2, 3, 4], Filled([1, 2, 3, 4]));
        p.Put("c", null, [1, 2, 3, 4], Filled([1, 2, 3, 4]));
        Assert.Equal((2, 1L), (p.Count, p.Evictions));
        Assert.True(p.Bytes <= 2 * one);
        Assert.Null(p.Take("a", null, [1, 2, 3, 4, 5]));
        Assert.NotNull(p.Take("c", null, [1, 2, 3, 4, 5]));
        p.Forget("x");
        Assert.Equal(1, p.Count);
    }

    [Fact]
    public void AnEntryLargerThanTheWholeSpaceIsRefusedWithoutEvictingAnyone()
    {
        int[] small = [1, 2, 3], large = [.. Enumerable.Range(1, 64)];
        var c = Filled(small);
        var l = Filled(large);
        long room = KvSwapSpace.BytesFor(c) * 2;
        Assert.True(KvSwapSpace.BytesFor(l) > room);
        using var p = NewCache(_pool, room);
        p.Put("a", null, small, c);
        p.Put("b", null, [7, 8, 9], c);
        p.Put("a", null, large, l);  // another tenant's entry and this tenant's own shorter one both stay
        Assert.Equal((2, 0L, 1L), (p.Count, p.Evictions, p.TooLarge));
        foreach (var (tenant, prompt) in new[] { ("a", new[] { 1, 2, 3, 4 }), ("b", [7, 8, 9, 10]) })
        {
            var kv = p.Take(tenant, null, prompt);
            Assert.NotNull(kv);
            kv.Owner.Drop(kv);
        }
        c.Release();
        l.Release();
    }

    [Fact]
    public void APendingPutIsNeitherFoundNorEvictedUntilCopiedAndAForgottenAdapterNeverJoins()
    {
        using var p = NewCache(_pool, 1 << 20);
        int[] turn = [4, 5, 6];
        var c = Filled(turn);
        var put = p.BeginPut("a", "x", turn, c);
        Assert.NotNull(put);
        Assert.True(p.IsPutPending("a", "x"));
        Assert.False(p.IsPutPending("a", null));
        Assert.Null(p.Take("a", "x", [4, 5, 6, 7]));             // not yet copied
        Assert.True(p.Bytes > 0);                                 // its buffer is reserved
        put.Copy();
        Assert.False(p.IsPutPending("a", "x"));
        var kv = p.Take("a", "x", [4, 5, 6, 7]);
        Assert.NotNull(kv);
        var d = new PagedKvCache(_pool, ++_ids, 2, 16, 64);
        d.Reserve(4);
        kv.Owner.SwapIn(kv, d);
        Assert.Equal(6, d.Keys(0, 0)[2 * 16]);                    // the copied bytes
        d.Release();

        var forgotten = p.BeginPut("a", "x", turn, c)!;
        p.Forget("x");                                            // unregistered while copying
        forgotten.Copy();
        Assert.Equal((0, 0L), (p.Count, p.Bytes));
        c.Release();
        Assert.Null(_pool.Audit());
    }
}
