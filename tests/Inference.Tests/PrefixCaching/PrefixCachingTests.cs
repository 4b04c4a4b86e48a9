using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>Automatic prefix caching in the engine: a request served from cached blocks produces the tokens and logprobs
/// of the same request computed from scratch, bit for bit; blocks are shared only within one tenant and one adapter; a
/// system prompt used by concurrent requests is computed once. The engines run the Vector256 kernels, whose results for
/// a position do not depend on how the prompt was cut into chunks (<see cref="ChunkedPrefillDeterminismTests"/>).</summary>
public sealed class PrefixCachingTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    internal static readonly int[] System = Enumerable.Range(0, 24).Select(i => (i * 29 + 5) % 320).ToArray();

    internal static GenerationRequest Request(string tenant, int[] suffix, string? adapter = null, int maxTokens = 6, float temperature = 0) => new()
    {
        PromptTokenIds = [.. System, .. suffix],
        TenantId = tenant,
        AdapterId = adapter,
        Sampling = new SamplingParams { Seed = 7, MaxTokens = maxTokens, IgnoreEos = true, Temperature = temperature, Logprobs = 4 },
    };

    private ServingEngine Cached(KvCacheFormat format = KvCacheFormat.F32) =>
        _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = true; o.KvCacheFormat = format; return o; });
    private ServingEngine Plain(KvCacheFormat format = KvCacheFormat.F32) =>
        _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = false; o.KvCacheFormat = format; return o; });

    /// <summary>Token ids and the bits of every logprob (the chosen token's and the alternatives').</summary>
    internal static string Fingerprint(List<GenerationEvent> events) => string.Join(";", events.Where(e => e.TokenId is not null).Select(e =>
        $"{e.TokenId}:{BitConverter.SingleToInt32Bits(e.Logprobs!.Logprob):x}:" +
        string.Join(",", e.Logprobs.Top.Select(a => $"{a.TokenId}={BitConverter.SingleToInt32Bits(a.Logprob):x}"))));

    /// <summary>bf16 KV: blocks of 4 positions (6 of the system prompt), shared and recomputed alike.</summary>
    [Theory]
    [InlineData(false, 0f, KvCacheFormat.F32)]
    [InlineData(true, 0f, KvCacheFormat.F32)]
    [InlineData(true, 0.8f, KvCacheFormat.F32)]
    [InlineData(false, 0f, KvCacheFormat.Bf16)]
    [InlineData(true, 0.8f, KvCacheFormat.Bf16)]
    public async Task ARequestServedFromCachedBlocksEqualsOneComputedFromScratchBitwise(bool adapter, float temperature, KvCacheFormat format)
    {
        var e = Cached(format);
        var plain = Plain(format);
        string? id = null;
        if (adapter)
        {
            var folder = _h.Adapter(8, [LoraTarget.QProj, LoraTarget.VProj, LoraTarget.DownProj], 11);
            e.RegisterAdapter("x", folder);
            plain.RegisterAdapter("x", folder);
            id = "x";
        }
        await Run(e, Request("a", [1, 2, 3], id, temperature: temperature));
        long before = e.GetMetrics().Loop.TokensComputed;
        var second = Request("a", [9, 8, 7, 6, 5], id, temperature: temperature);
        var cached = await Run(e, second);
        var m = e.GetMetrics();
        Assert.Equal(1, m.Prefix.Hits);
        Assert.Equal(System.Length, m.Prefix.TokensReused); // 12 blocks of 2 (bf16: 6 of 4); the suffix's first block differs
        Assert.Equal(5 + 6 - 1, m.Loop.TokensComputed - before); // only the suffix and the decodes ran
        var scratch = await Run(plain, second);
        Assert.Equal(6, Tokens(scratch).Length);
        Assert.Equal(Fingerprint(scratch), Fingerprint(cached));
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Fact]
    public async Task TwoTenantsWithTheSamePromptShareNothing()
    {
        var e = Cached();
        await Run(e, Request("a", [1, 2, 3]));
        int cachedByA = e.Pool.Usage.CachedPages;
        Assert.True(cachedByA > 0);
        long before = e.GetMetrics().Loop.TokensComputed;
        var b = await Run(e, Request("b", [1, 2, 3]));
        var m = e.GetMetrics();
        Assert.Equal(0, m.Prefix.Hits);
        Assert.Equal(System.Length + 3 + 6 - 1, m.Loop.TokensComputed - before); // everything computed again
        Assert.Equal(2 * cachedByA, e.Pool.Usage.CachedPages);              // b's blocks are b's own
        Assert.Equal(Fingerprint(await Run(Plain(), Request("b", [1, 2, 3]))), Fingerprint(b));
        await Run(e, Request("b", [4, 4]));
        Assert.Equal(1, e.GetMetrics().Prefix.Hits); // (and b's own blocks do serve b)
        await Idle(e);
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Fact]
    public async Task TwoAdaptersOfOneTenantAndTheBaseModelShareNothing()
    {
        var e = Cached();
        e.RegisterAdapter("x", _h.Adapter(4, [LoraTarget.QProj, LoraTarget.KProj], 3));
        e.RegisterAdapter("y", _h.Adapter(4, [LoraTarget.QProj, LoraTarget.KProj], 4));
        await Run(e, Request("a", [1, 2, 3], "x"));
        await Run(e, Request("a", [1, 2, 3], "y"));
        await Run(e, Request("a", [1, 2, 3]));
        Assert.Equal(0, e.GetMetrics().Prefix.Hits);
        await Run(e, Request("a", [5, 5, 5], "y"));
        Assert.Equal(1, e.GetMetrics().Prefix.Hits);

        // an unregistered adapter's blocks are gone: the id may come back with other weights
        await Idle(e);
        e.UnregisterAdapter("x");
        e.RegisterAdapter("x", _h.Adapter(4, [LoraTarget.QProj, LoraTarget.KProj], 5));
        await Run(e, Request("a", [1, 2, 3], "x"));
        Assert.Equal(1, e.GetMetrics().Prefix.Hits);
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Fact]
    public async Task ConcurrentRequestsWithOneSystemPromptComputeItOnce()
    {
        var e = Cached();
        var plain = Plain();
        // six requests at once; the suffixes differ from their first token on
        var requests = Enumerable.Range(0, 6).Select(i => Request("a", [100 + i, 7, 8], maxTokens: 4)).ToArray();
        var outputs = await Task.WhenAll(requests.Select(r => Run(e, r))).WaitAsync(Limit);
        var m = e.GetMetrics();
        // the first computes its 27 prompt tokens; the other five start from its 12 system blocks (24 tokens)
        Assert.Equal(5, m.Prefix.Hits);
        Assert.Equal(5 * System.Length, m.Prefix.TokensReused);
        Assert.Equal(6 * (27 + 3) - 5 * System.Length, m.Loop.TokensComputed);
        for (int i = 0; i < requests.Length; i++)
            Assert.Equal(Fingerprint(await Run(plain, requests[i])), Fingerprint(outputs[i]));
        await Idle(e);
        Assert.Null(e.AuditPrefixBlocks());
    }

    [Fact]
    public async Task NChoicesShareTheirPromptsBlocksAndMatchIndependentRequests()
    {
        var e = Cached();
        var plain = Plain();
        var request = Request("a", [3, 1, 4, 1, 5], maxTokens: 5);
        var samplings = Enumerable.Range(0, 3).Select(i => new SamplingParams { Seed = (ulong)(50 + i), MaxTokens = 5, IgnoreEos = true, Temperature = 0.9f, Logprobs = 2 }).ToArray();
        var events = new List<GenerationEvent>[3];
        for (int i = 0; i < 3; i++) events[i] = [];
        await foreach (var (choice, ev) in e.GenerateChoicesAsync(request, samplings).WithCancellation(default)) events[choice].Add(ev);
        var m = e.GetMetrics();
        int prompt = System.Length + 5, shared = (prompt - 1) / 2 * 2; // 28 tokens in 14 full blocks
        Assert.Equal(2, m.Prefix.Hits);
        Assert.Equal(prompt + 2 * (prompt - shared) + 3 * (5 - 1), m.Loop.TokensComputed);
        for (int i = 0; i < 3; i++)
            Assert.Equal(Fingerprint(await Run(plain, request with { Sampling = samplings[i] })), Fingerprint(events[i]));
        await Idle(e);
        Assert.Null(e.AuditPrefixBlocks());
    }
}
