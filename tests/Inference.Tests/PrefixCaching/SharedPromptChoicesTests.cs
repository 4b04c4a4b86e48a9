using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>The n choices of one prompt with prefix caching on: the first choice computes
/// the prompt and the others share its full blocks, and every choice gives the tokens of an independent request; with
/// prefix caching off each choice computes the whole prompt. The engines run the Vector256 kernels, whose results for
/// a position do not depend on how the prompt was cut into chunks, so the tokens are compared exactly.</summary>
public sealed class SharedPromptChoicesTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

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
    public async Task WithPrefixCachingTheChoicesComputeThePromptOnceAndMatchIndependentRequests()
    {
        var shared = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = true; return o; });
        var plain = _h.Engine(SimdLevel.Vector256, o => { o.PrefixCaching = false; return o; });
        int[] prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38];
        const int n = 3;
        int bt = shared.PrefixBlocks!.BlockTokens, blocks = (prompt.Length - 1) / bt * bt;

        var alone = new List<int[]>();
        for (int i = 0; i < n; i++) alone.Add(Tokens(await Run(plain, Request(prompt) with { Sampling = Sampling(40 + (ulong)i) })));

        long before = shared.GetMetrics().Loop.TokensComputed;
        var choices = await Choices(shared, prompt, n);
        var m = shared.GetMetrics();
        Assert.Equal(alone, choices);
        // the first choice computes the prompt; the others its last partial block and last token; then each its own tokens
        Assert.Equal(prompt.Length + (n - 1) * (prompt.Length - blocks) + n * 7, m.Loop.TokensComputed - before);
        Assert.Equal(n - 1, m.Prefix.Hits);
        Assert.Equal((n - 1) * blocks, m.Prefix.TokensReused);

        long plainBefore = plain.GetMetrics().Loop.TokensComputed;
        Assert.Equal(alone, await Choices(plain, prompt, n)); // no prefix caching: each choice computes the prompt
        Assert.Equal(n * prompt.Length + n * 7, plain.GetMetrics().Loop.TokensComputed - plainBefore);
        Assert.Equal(0, plain.GetMetrics().Prefix.Hits);

        await Idle(shared);
        Assert.Null(shared.Pool.Audit());
        Assert.Null(shared.AuditPrefixBlocks());
        Assert.Equal(0, shared.Pool.Usage.KvPages);
    }
}
