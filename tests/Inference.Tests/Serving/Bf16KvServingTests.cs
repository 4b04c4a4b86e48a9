using Loom.Inference.Engine;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Serving;

/// <summary>The engine with Inference:KvCacheFormat = bf16: the oracle's greedy tokens through chunked prefill, and twice
/// the tokens in the same pool (a longer prompt admitted; twice the sequences running without preemption).</summary>
public sealed class Bf16KvServingTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private ServingEngine Engine(KvCacheFormat format, Func<InferenceOptions, InferenceOptions>? edit = null, string name = Base) =>
        _h.Engine(o =>
        {
            o.KvCacheFormat = format;
            return edit?.Invoke(o) ?? o;
        }, name);

    [Fact]
    public async Task GreedyGenerationWithBf16KvFollowsTheOracle()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        var e = Engine(KvCacheFormat.Bf16, name: "llama3_scaled_bf16");
        Assert.Equal("bf16", e.Model.KvCacheFormat);
        var events = await Run(e, new GenerationRequest
        {
            PromptTokenIds = g.Prompts[0],   // 9 tokens, prefill chunk 4
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = g.DecodeTokens.Length },
        }).WaitAsync(Limit);
        Assert.Equal(g.DecodeTokens, Tokens(events)); // margins checked in Bf16KvForwardTests
        await Idle(e);
        Assert.Null(e.Pool.Audit());
    }

    /// <summary>40 pages of 256 bytes (llama_gqa_tied: 4 pages a block of 2 positions in f32, of 4 in bf16) hold at most
    /// 20 positions of one sequence in f32 and 40 in bf16: a 30-token prompt is refused in f32 and served in bf16.</summary>
    [Fact]
    public async Task APromptTooLongForTheF32PoolFitsInBf16()
    {
        var prompt = Enumerable.Range(0, 30).Select(i => (i * 13 + 1) % 320).ToArray();
        var request = new GenerationRequest { PromptTokenIds = prompt, Sampling = new SamplingParams { Seed = 1, MaxTokens = 5, IgnoreEos = true } };
        var f32 = Engine(KvCacheFormat.F32, o => { o.PoolBytes = 40 * 256; return o; });
        var refused = await Assert.ThrowsAsync<ArgumentException>(() => Run(f32, request));
        Assert.Contains("the page pool can hold at most 19", refused.Message);
        var bf16 = Engine(KvCacheFormat.Bf16, o => { o.PoolBytes = 40 * 256; return o; });
        Assert.Equal(5, Tokens(await Run(bf16, request).WaitAsync(Limit)).Length);
        await Idle(bf16);
        Assert.Null(bf16.Pool.Audit());
    }

    /// <summary>Eight sequences of 20 positions at once in a pool of 170 pages: in f32 (40 pages each) only four fit, and
    /// sequences are preempted; in bf16 (20 pages each) all eight run to the end without preemption.</summary>
    [Fact]
    public async Task ThePoolThatPreemptsInF32RunsTwiceTheSequencesInBf16()
    {
        var requests = Enumerable.Range(0, 8).Select(i => new GenerationRequest
        {
            PromptTokenIds = Enumerable.Range(0, 12).Select(j => (i * 31 + j * 7) % 320).ToArray(),
            Sampling = new SamplingParams { Seed = (ulong)i, MaxTokens = 8, IgnoreEos = true, Temperature = 0.8f },
        }).ToArray();
        async Task<EngineMetrics> Serve(KvCacheFormat format)
        {
            var e = Engine(format, o => { o.PoolBytes = 170 * 256; o.MaxRunningSequences = 8; o.SwapSpaceBytes = 0; return o; });
            var outputs = await Task.WhenAll(requests.Select(r => Run(e, r))).WaitAsync(Limit);
            Assert.All(outputs, o => Assert.Equal(8, Tokens(o).Length));
            await Idle(e);
            Assert.Null(e.Pool.Audit());
            return e.GetMetrics();
        }
        var f32 = await Serve(KvCacheFormat.F32);
        var bf16 = await Serve(KvCacheFormat.Bf16);
        Assert.True(f32.Scheduling.Preemptions > 0, $"f32: no preemption ({f32.Scheduling})");
        Assert.Equal(0, bf16.Scheduling.Preemptions);
    }
}
