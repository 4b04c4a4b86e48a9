using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.PrefixCaching.PrefixCachingTests;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>Cached blocks and the pool: idle cached blocks give their pages back before anyone is preempted; sequences
/// holding shared blocks can be preempted (swapped or recomputed) and cancelled without freeing or changing the blocks
/// for the others; the pool's and the block cache's audits hold throughout.</summary>
public sealed class PrefixCachingMemoryTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static int[] Prompt(int i, int length) => Enumerable.Range(0, length).Select(j => (i * 53 + j * 17 + 1) % 320).ToArray();

    [Fact]
    public async Task IdleCachedBlocksAreEvictedBeforeAnyoneIsPreempted()
    {
        // 256 pages (64 blocks of 2 tokens); three finished requests leave 48 blocks cached
        var e = _h.Engine(SimdLevel.Vector256, o => { o.PoolBytes = 256 * 256; o.PrefixCaching = true; o.SchedulingPolicy = Scheduling.SchedulingPolicyKind.Fcfs; return o; });
        var plain = _h.Engine(SimdLevel.Vector256, o => { o.PoolBytes = 1 << 20; o.PrefixCaching = false; return o; });
        GenerationRequest R(int i, int prompt, int tokens) => new()
        {
            PromptTokenIds = Prompt(i, prompt),
            TenantId = "a",
            Sampling = new SamplingParams { Seed = (ulong)i, MaxTokens = tokens, IgnoreEos = true, Temperature = 0.7f },
        };
        for (int i = 0; i < 3; i++) await Run(e, R(i, 30, 4));
        Assert.Equal(3 * 16 * 4, e.Pool.Usage.CachedPages);
        Assert.Equal(256 - 3 * 16 * 4, e.Pool.FreePages);

        // two requests that grow to 40 positions each (80 pages each, 160 in all): more than the free pages, less than
        // the pool; without eviction one of them would be preempted when they grow
        var big = new[] { R(10, 8, 32), R(11, 8, 32) };
        var outputs = await Task.WhenAll(big.Select(r => Run(e, r))).WaitAsync(Limit);
        await Idle(e);
        var m = e.GetMetrics();
        Assert.Equal(0, m.Scheduling.Preemptions);
        // Evictions depend on how the two interleave: side by side they need 160 pages with 64 free, so at least
        // (160 - 64) / 4 = 24 blocks go; if the first finishes before the second grows (a loaded machine), the first
        // evicts 4, its 19 full blocks are cached (its last block holds one position and is freed), and the second evicts
        // 19: 23. Either way idle blocks went instead of a running sequence (no preemption above).
        Assert.True(e.PrefixBlocks!.Evicted >= 23, $"{e.PrefixBlocks.Evicted} blocks evicted");
        for (int i = 0; i < big.Length; i++) Assert.Equal(Tokens(await Run(plain, big[i])), Tokens(outputs[i]));
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
        var u = e.Pool.Usage;
        Assert.Equal(u.TotalPages, u.FreePages + u.CachedPages);
        Assert.Equal(m.Pool.CachedPages, u.CachedPages);
    }

    [Fact]
    public async Task ARequestWhoseIdleAdapterIsResidentEvictsCachedBlocksWhenThePoolIsFullOfThem()
    {
        // The pool holds the adapter (resident, pinned by nobody) and cached blocks, with fewer free pages than a
        // request's first chunk needs. The adapter's own pages are not room for that request (it pins them), so idle
        // cached blocks have to go. Counting them as room once left such a request waiting for ever with nothing
        // running (the cluster's overload hang).
        var folder = _h.Adapter(8, [LoraTarget.QProj, LoraTarget.VProj, LoraTarget.DownProj], 11);
        var probe = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = true; return o; });
        probe.RegisterAdapter("x", folder);
        int adapterPages = probe.Adapters.PagesOf("x");
        var e = _h.Engine(SimdLevel.Vector256, o =>
        {
            o.PoolBytes = (adapterPages + 150) * 256;
            o.PrefixCaching = true;
            o.SchedulingPolicy = Scheduling.SchedulingPolicyKind.Fcfs;
            return o;
        });
        var plain = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = false; return o; });
        e.RegisterAdapter("x", folder);
        plain.RegisterAdapter("x", folder);
        GenerationRequest R(int i, int prompt, int tokens) => new()
        {
            PromptTokenIds = Prompt(i, prompt),
            TenantId = "a",
            AdapterId = "x",
            Sampling = new SamplingParams { Seed = (ulong)i, MaxTokens = tokens, IgnoreEos = true, Temperature = 0.7f },
        };
        // two long prompts of the adapter: more blocks than the pool has room for beside it, so it ends full of them
        for (int i = 0; i < 2; i++) await Run(e, R(i, 60, 2)).WaitAsync(Limit);
        await Idle(e);
        Assert.True(e.Adapters.IsResident("x"), "the adapter left the pool");
        Assert.True(e.Pool.FreePages < 8, $"{e.Pool.FreePages} free pages: room for a first chunk (4 tokens, 8 pages) without eviction");
        Assert.True(e.PrefixBlocks!.EvictablePages >= 8, $"{e.PrefixBlocks.EvictablePages} evictable pages");
        long evicted = e.PrefixBlocks.Evicted;

        var next = R(5, 20, 3);
        var output = await Run(e, next).WaitAsync(Limit);
        Assert.True(e.PrefixBlocks.Evicted > evicted, "no cached block was evicted for the request");
        Assert.Equal(Tokens(await Run(plain, next)), Tokens(output));
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task SequencesHoldingSharedBlocksCanBePreemptedAndTheirTokensDoNotChange(bool swap, bool asyncSwap)
    {
        // eight requests with the system prompt and different suffixes in a pool that is too small for all: preemption
        var requests = Enumerable.Range(0, 8).Select(i => Request(i % 2 == 0 ? "a" : "b", [200 + i, 3, 4], maxTokens: 12, temperature: 0.9f)).ToArray();
        var solo = _h.Engine(SimdLevel.Vector256, o => { o.MaxRunningSequences = 1; o.PrefixCaching = false; return o; });
        var expected = new List<string>();
        foreach (var r in requests) expected.Add(Fingerprint(await Run(solo, r)));

        var e = _h.Engine(SimdLevel.Vector256, o =>
        {
            o.PoolBytes = 200 * 256;
            o.PrefixCaching = true;
            o.SwapSpaceBytes = swap ? 1 << 20 : 0;
            o.SwapMinTokens = 1;
            o.AsyncSwap = asyncSwap;
            return o;
        });
        var outputs = await Task.WhenAll(requests.Select(r => Run(e, r))).WaitAsync(Limit);
        await Idle(e);
        var m = e.GetMetrics();
        Assert.True(m.Scheduling.Preemptions > 0, $"no preemption: {m}");
        Assert.True(m.Prefix.Hits > 0, $"no request started from cached blocks: {m}");
        if (swap) Assert.True(m.Scheduling.Swap.Preemptions > 0);
        for (int i = 0; i < requests.Length; i++) Assert.Equal(expected[i], Fingerprint(outputs[i]));
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());

        // whatever blocks were left behind, a next request of the tenant gets the tokens of a run from scratch
        var next = Request("a", [9, 9, 9], maxTokens: 3);
        Assert.Equal(Fingerprint(await Run(solo, next)), Fingerprint(await Run(e, next)));
        await Idle(e);
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Fact]
    public async Task CancellingASequenceThatHoldsSharedBlocksLeavesThemToTheOthers()
    {
        var e = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = true; return o; });
        var plain = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = false; return o; });
        await Run(e, Request("a", [1, 2, 3], maxTokens: 2));
        int cached = e.Pool.Usage.CachedPages;

        // a long request starts from the system blocks and is cancelled while it decodes
        using var cts = new CancellationTokenSource();
        var events = new List<GenerationEvent>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var ev in e.GenerateAsync(Request("a", [5, 6, 7], maxTokens: 30), cts.Token))
            {
                events.Add(ev);
                if (events.Count == 3)
                {
                    Assert.Equal(1, e.GetMetrics().Prefix.Hits);
                    cts.Cancel();
                }
            }
        });
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
        Assert.True(e.Pool.Usage.CachedPages >= cached, "the shared blocks went back to the pool with the cancelled request");

        var after = Request("a", [8, 8], maxTokens: 4);
        Assert.Equal(Fingerprint(await Run(plain, after)), Fingerprint(await Run(e, after)));
        Assert.Equal(2, e.GetMetrics().Prefix.Hits);
        await Idle(e);
        Assert.Null(e.AuditPrefixBlocks());
    }
}
