using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>Multi-turn chat with prefix caching on: a next turn of the same tenant starts from the blocks its
/// earlier turn filled, its answer included, and produces the tokens of a run without reuse; another tenant with the
/// identical prompt never gets them. The engines run the Vector256 kernels, whose results for a position do not depend on
/// how the prompt was cut into chunks (<see cref="ChunkedPrefillDeterminismTests"/>), so the outputs are compared
/// bit for bit.</summary>
public sealed class MultiTurnTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Request(string tenant, int[] prompt) => new()
    {
        PromptTokenIds = prompt,
        TenantId = tenant,
        Sampling = new SamplingParams { Seed = 42, MaxTokens = 10, IgnoreEos = true, Temperature = 0.7f, Logprobs = 3 },
    };

    [Fact]
    public async Task ASecondTurnStartsFromItsFirstTurnsBlocksAndAnotherTenantWithTheSamePromptDoesNot()
    {
        var e = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = true; return o; });
        var plain = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = false; return o; });
        int bt = e.PrefixBlocks!.BlockTokens;
        int[] turn1 = [3, 14, 15, 92, 65, 35, 89, 79];
        var out1 = Tokens(await Run(e, Request("a", turn1)));
        Assert.Equal(10, out1.Length);
        int[] turn2 = [.. turn1, .. out1, 32, 38, 46];

        var b = await Run(e, Request("b", turn2));       // identical prompt, other tenant
        var m = e.GetMetrics();
        Assert.Equal(0, m.Prefix.Hits);
        Assert.True(m.Prefix.Bytes > 0);

        long computedBefore = m.Loop.TokensComputed;
        var a = await Run(e, Request("a", turn2));
        m = e.GetMetrics();
        // the first turn's KV held its prompt and every answer token but the last (never fed back): its full blocks
        int reused = (turn1.Length + out1.Length - 1) / bt * bt;
        Assert.True(reused > turn1.Length, "the answer's blocks should be reused too");
        Assert.Equal(1, m.Prefix.Hits);
        Assert.Equal(reused, m.Prefix.TokensReused);
        Assert.Equal(turn2.Length - reused + Tokens(a).Length - 1, m.Loop.TokensComputed - computedBefore); // only the rest ran

        var expected = PrefixCachingTests.Fingerprint(await Run(plain, Request("a", turn2)));
        Assert.Equal(expected, PrefixCachingTests.Fingerprint(a));
        Assert.Equal(expected, PrefixCachingTests.Fingerprint(b));
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Null(e.AuditPrefixBlocks());
        Assert.Equal(0, e.Pool.Usage.KvPages);
    }
}
