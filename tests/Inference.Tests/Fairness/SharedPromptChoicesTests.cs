using Loom.Inference.Engine;
using Loom.Inference.Memory;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Fairness;

/// <summary>The n choices of one prompt over one prefill: a pinned prefix entry hands a copy to each hit but the last
/// and is not superseded while pinned; the engine's choices give the tokens of independent requests, with and without
/// a prefix cache, and compute the prompt once with one.</summary>
public sealed class SharedPromptChoicesTests : IDisposable
{
    private readonly ServingHarness _h = new();
    private readonly PagePool _pool = new(4096 * 64 * sizeof(float), 64);

    public void Dispose()
    {
        _h.Dispose();
        _pool.Dispose();
    }

    [Fact]
    public void APinnedEntryIsCopiedForEachHitButTheLastAndOutlivesALongerTurn()
    {
        using var p = new PrefixKvCache(new KvSwapSpace(_pool, 1 << 20));
        int[] prefix = [5, 6, 7, 8, 9];
        var c = new PagedKvCache(_pool, 1, 2, 16, 64);
        c.Reserve(prefix.Length);
        for (int layer = 0; layer < 2; layer++)
            for (int pos = 0; pos < prefix.Length; pos++) c.Keys(layer, pos / c.BlockSize).Slice(pos % c.BlockSize * 16, 16).Fill(prefix[pos]);
        c.Advance(prefix.Length);
        p.Put("a", null, prefix, c);
        Assert.False(p.Pin("b", null, prefix, 3)); // another tenant has no such entry
        Assert.True(p.Pin("a", null, prefix, 3));

        int[] prompt = [.. prefix, 10];
        var first = p.Take("a", null, prompt);
        // a finished choice's longer sequence does not supersede the pinned entry
        int[] longer = [.. prompt, 11, 12];
        var d = new PagedKvCache(_pool, 2, 2, 16, 64);
        d.Reserve(longer.Length);
        d.Advance(longer.Length);
        p.Put("a", null, longer, d);
        d.Release();
        var second = p.Take("a", null, prompt);
        var third = p.Take("a", null, prompt);
        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.NotNull(third);
        Assert.NotSame(first, second);
        Assert.NotSame(second, third);
        Assert.Equal((3L, 15L), (p.Hits, p.TokensReused));
        Assert.Equal(1, p.Count); // the pinned entry went with the last hit; the longer turn stays

        foreach (var kv in new[] { first!, second!, third! }) // each copy restores the same bytes on its own
        {
            var e = new PagedKvCache(_pool, 3, 2, 16, 64);
            e.Reserve(prompt.Length);
            kv.Owner.SwapIn(kv, e);
            for (int pos = 0; pos < prefix.Length; pos++) Assert.Equal(prefix[pos], e.Keys(1, pos / e.BlockSize)[pos % e.BlockSize * 16]);
            e.Release();
        }
        c.Release();
        Assert.Null(_pool.Audit());
    }

    private static GenerationRequest Request(int[] prompt) => new() { PromptTokenIds = prompt, TenantId = "t" };

    private static SamplingParams Sampling(ulong seed) => new() { Seed = seed, MaxTokens = 8, IgnoreEos = true, Temperature = 0.9f };

    private static async Task<int[][]> Choices(ServingEngine e, int[] prompt, int n)
    {
        var tokens = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
        await foreach (var (i, ev) in e.GenerateChoicesAsync(Request(prompt), [.. Enumerable.Range(0, n).Select(i => Sampling(40 + (ulong)i))]))
            if (ev.TokenId is { } t) tokens[i].Add(t);
        return [.. tokens.Select(t => t.ToArray())];
    }

    [Fact]
    public async Task ChoicesComputeThePromptOnceAndMatchIndependentRequests()
    {
        var shared = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 1 << 20; return o; });
        var plain = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 0; return o; });
        int[] prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38];
        const int n = 3;

        var alone = new List<int[]>();
        for (int i = 0; i < n; i++) alone.Add(Tokens(await Run(plain, Request(prompt) with { Sampling = Sampling(40 + (ulong)i) })));

        long before = shared.GetMetrics().Loop.TokensComputed;
        var choices = await Choices(shared, prompt, n);
        var m = shared.GetMetrics();
        Assert.Equal(alone, choices);
        Assert.Equal(prompt.Length - 1 + n * 8, m.Loop.TokensComputed - before); // one prefill, then each choice's own tokens
        Assert.Equal((long)n, m.Prefix.Hits);

        long plainBefore = plain.GetMetrics().Loop.TokensComputed;
        Assert.Equal(alone, await Choices(plain, prompt, n)); // no prefix cache: each choice computes the prompt
        Assert.Equal(n * prompt.Length + n * 7, plain.GetMetrics().Loop.TokensComputed - plainBefore);

        await Idle(shared);
        Assert.Null(shared.Pool.Audit());
        Assert.Equal(0, shared.Pool.Usage.KvPages);
    }
}
