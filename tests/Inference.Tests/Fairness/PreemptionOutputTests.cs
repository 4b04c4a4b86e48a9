using Loom.Inference.Engine;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Fairness;

/// <summary>A preempted request's tokens equal an unpreempted run's with the same seed, whether its cache was swapped
/// to host memory or dropped and recomputed.</summary>
public sealed class PreemptionOutputTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Request(int i) => new()
    {
        PromptTokenIds = Enumerable.Range(0, 8 + i % 5).Select(j => (i * 37 + j * 11) % 320).ToArray(),
        TenantId = i % 2 == 0 ? "a" : "b",
        Sampling = new SamplingParams { Seed = (ulong)(1000 + i), MaxTokens = 28, IgnoreEos = true, Temperature = 0.9f },
    };

    /// <summary>With bf16 KV the pool is half the bytes (the same positions), and the swap copies move bf16 pages.</summary>
    [Theory]
    [InlineData(true, true, KvCacheFormat.F32)]
    [InlineData(true, false, KvCacheFormat.F32)]
    [InlineData(false, true, KvCacheFormat.F32)]
    [InlineData(true, true, KvCacheFormat.Bf16)]
    [InlineData(true, false, KvCacheFormat.Bf16)]
    [InlineData(false, true, KvCacheFormat.Bf16)]
    public async Task PreemptedRequestsProduceTheTokensOfAnUnpreemptedRun(bool swap, bool asyncSwap, KvCacheFormat format)
    {
        var solo = _h.Engine(o => { o.MaxRunningSequences = 1; o.KvCacheFormat = format; return o; });
        var requests = Enumerable.Range(0, 8).Select(Request).ToArray();
        var expected = new List<int[]>();
        foreach (var r in requests) expected.Add(Tokens(await Run(solo, r)));
        Assert.Equal(0, solo.GetMetrics().Scheduling.Preemptions);

        // ~200 positions of KV for eight sequences of up to 40: memory runs short and sequences are preempted
        var e = _h.Engine(o =>
        {
            o.PoolBytes = (format == KvCacheFormat.Bf16 ? 200 : 400) * 256;
            o.KvCacheFormat = format;
            o.MaxRunningSequences = 8;
            o.SwapSpaceBytes = swap ? 1 << 20 : 0;
            o.SwapMinTokens = 1;
            o.AsyncSwap = asyncSwap;
            return o;
        });
        var outputs = await Task.WhenAll(requests.Select(r => Run(e, r))).WaitAsync(Limit);
        await Idle(e);
        var m = e.GetMetrics();
        Assert.True(m.Scheduling.Preemptions > 0, $"no preemption: {m}");
        if (swap)
        {
            Assert.True(m.Scheduling.Swap.Preemptions > 0);
            Assert.True(m.Scheduling.Swap.BytesOut > 0);
            if (asyncSwap) Assert.InRange(m.Scheduling.Swap.BytesIn, 0, m.Scheduling.Swap.BytesOut); // readmitted before its copy out was taken back: no copy in
            else Assert.Equal(m.Scheduling.Swap.BytesOut, m.Scheduling.Swap.BytesIn);
        }
        else
        {
            Assert.Equal(0, m.Scheduling.Swap.Preemptions);
            Assert.True(m.Scheduling.RecomputeTokens > 0);
        }
        for (int i = 0; i < requests.Length; i++) Assert.Equal(expected[i], Tokens(outputs[i]));
        Assert.Null(e.Pool.Audit());
    }
}
