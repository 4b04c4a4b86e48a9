using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;

namespace Loom.Inference.Tests.Memory;

/// <summary>The paged KV cache behind the existing attention kernel gives the same logits as the private-array cache.</summary>
public sealed class PagedKvCacheTests
{
    [Theory]
    [MemberData(nameof(Golden.Names), MemberType = typeof(Golden))]
    public void ForwardThroughPoolPagesEqualsThePrivateCache(string name)
    {
        var g = Golden.Load(name);
        using var m = GoldenLogitsTests.Open(name);
        var c = m.Config;
        using var pool = new PagePool(600L * c.HiddenSize * 4, c.HiddenSize);
        var prompts = g.Prompts;
        int vocab = c.VocabSize;

        // batch all prompts (prefill), then two decode steps, through both kinds of cache
        var expected = Bf16KvForwardTests.Run(m, prompts, _ => m.CreateCache(64));
        var paged = new List<PagedKvCache>();
        var actual = Bf16KvForwardTests.Run(m, prompts, i => { var p = PagedKvCache.For(pool, c, i, 64); paged.Add(p); return p; });
        Assert.Equal(expected.Length, actual.Length);
        Assert.Equal(expected, actual); // same arithmetic, different memory: bit-identical
        Assert.True(paged[0].BlockSize == c.HiddenSize / c.KvDim);
        Assert.Equal(paged.Sum(p => p.PagesHeld), pool.Usage.KvPages);
        Assert.Null(pool.Audit());
        foreach (var p in paged) p.Dispose();
        Assert.Equal(pool.PageCount, pool.FreePages);
    }

    [Fact]
    public void ReserveTakesAllOrNothing()
    {
        var c = ModelConfig.Load(Golden.PathOf("llama_gqa_tied")); // kv width 32 in 64-float pages: 2 tokens per page
        using var pool = new PagePool(10L * 64 * 4, 64);
        using var cache = PagedKvCache.For(pool, c, 7, 100);
        Assert.Equal(2, cache.BlockSize);
        Assert.Equal(8, cache.PagesToReserve(4));  // 2 blocks × 2 layers × (K, V)
        Assert.True(cache.TryReserve(4));
        Assert.Equal(8, pool.Usage.KvPages);
        Assert.False(cache.TryReserve(6));         // needs 4 more, 2 free
        Assert.Equal(2, pool.FreePages);
        Assert.Equal(4, cache.Capacity);
        Assert.Throws<InvalidOperationException>(() => cache.Reserve(6));
        Assert.Equal(PageOwner.Kv(7), pool.OwnerOf(0));
        cache.Release();
        Assert.Equal(10, pool.FreePages);
        Assert.Equal(0, cache.Capacity);
        Assert.Equal(8, PagedKvCache.PagesFor(c, 64, 3));
    }

    [Fact]
    public void KvWiderThanAPageIsRefused()
    {
        using var pool = new PagePool(10L * 16 * 4, 16);
        Assert.Throws<NotSupportedException>(() => new PagedKvCache(pool, 0, 2, 32, 10));
    }

    /// <summary>With bf16 keys and values a page holds twice the positions: a sequence takes half the pages, so a pool
    /// that admits N sequences in f32 admits 2N.</summary>
    [Fact]
    public void ABf16PoolHoldsTwiceTheSequences()
    {
        var c = ModelConfig.Load(Golden.PathOf("llama_gqa_tied")); // kv width 32 in 64-float pages: 2 tokens per page, 4 in bf16
        foreach (int tokens in new[] { 4, 40, 64, 1000 })
            Assert.Equal(PagedKvCache.PagesFor(c, 64, tokens, KvCacheFormat.F32), 2 * PagedKvCache.PagesFor(c, 64, tokens, KvCacheFormat.Bf16));
        Assert.Equal(PagedKvCache.PagesFor(c, 64, 1), PagedKvCache.PagesFor(c, 64, 1, KvCacheFormat.Bf16)); // a block is still a page per layer and K/V
        Assert.Equal(80, PagedKvCache.PagesFor(c, 64, 40, KvCacheFormat.F32));
        Assert.Equal(40, PagedKvCache.PagesFor(c, 64, 40, KvCacheFormat.Bf16));

        int Admitted(KvCacheFormat format)
        {
            using var pool = new PagePool(10L * 80 * 64 * 4, 64); // ten sequences of 40 tokens in f32
            var caches = new List<PagedKvCache>();
            while (true)
            {
                var cache = PagedKvCache.For(pool, c, caches.Count, 40, format);
                if (!cache.TryReserve(40)) break;
                Assert.Equal(PagedKvCache.PagesFor(c, 64, 40, format), cache.PagesHeld);
                caches.Add(cache);
            }
            Assert.Equal(0, pool.FreePages);
            foreach (var cache in caches) cache.Release();
            Assert.Null(pool.Audit());
            return caches.Count;
        }
        Assert.Equal(10, Admitted(KvCacheFormat.F32));
        Assert.Equal(20, Admitted(KvCacheFormat.Bf16));
    }
}
