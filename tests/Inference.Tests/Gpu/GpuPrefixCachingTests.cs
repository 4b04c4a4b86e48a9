using Loom.Inference.Engine;
using Loom.Inference.Tests.Engine;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.PrefixCaching.PrefixCachingTests;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Gpu;

/// <summary>Prefix caching on the GPU backend: its device copy of the pool is kept by page allocation count, and a
/// shared block's pages are neither allocated again nor written while shared, so a request that starts from them reads
/// the keys and values its first computation wrote; after eviction the pages are allocated again and uploaded anew.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuPrefixCachingTests
{
    private static ServingEngine Engine(bool caching, long poolBytes) => new(IlgpuCpu.Open(ServingHarness.Base), new FakeTokenizer(320, []),
        new InferenceOptions
        {
            MaxContext = 64, PrefillChunk = 8, TokenBudget = 16, MaxRunningSequences = 4, PoolBytes = poolBytes, MaxLoraRank = 8,
            PrefixCaching = caching,
        });

    [Fact]
    public async Task RequestsFromCachedBlocksMatchRequestsFromScratchAcrossEviction()
    {
        // 160 pages: the second tenant's requests evict the first tenant's blocks, whose pages are then reused
        using var e = Engine(caching: true, poolBytes: 160 * 256);
        using var plain = Engine(caching: false, poolBytes: 1 << 20);
        var requests = new[]
        {
            Request("a", [1, 2, 3], maxTokens: 4), Request("a", [9, 8, 7], maxTokens: 4),
            Request("b", [4, 4, 4], maxTokens: 8), Request("b", [5, 5], maxTokens: 8), Request("a", [6, 6, 6], maxTokens: 4),
        };
        foreach (var r in requests)
        {
            var cached = await Run(e, r);
            var scratch = await Run(plain, r);
            Assert.Equal(Tokens(scratch), Tokens(cached));
            var a = cached.Where(x => x.Logprobs is not null).Select(x => x.Logprobs!.Logprob).ToArray();
            var b = scratch.Where(x => x.Logprobs is not null).Select(x => x.Logprobs!.Logprob).ToArray();
            Assert.True(Compare.RelativeError(a, b).Rel < 1e-4, $"logprobs differ: {string.Join(",", a)} vs {string.Join(",", b)}");
        }
        var m = e.GetMetrics();
        Assert.True(m.Prefix.Hits >= 2, $"{m.Prefix}");
        Assert.True(e.PrefixBlocks!.Evicted > 0, "no block was evicted");
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
    }
}
