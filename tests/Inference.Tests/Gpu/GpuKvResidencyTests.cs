using Loom.Inference.Engine;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Engine;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Gpu;

/// <summary>The KV pages on the device are the authoritative copy while a sequence runs (decision 010): a step copies no
/// keys or values back; a swap-out brings back the pages it reads, and swapped sequences and cached prefix blocks give the
/// tokens of runs that never swapped or reused anything.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuKvResidencyTests
{
    private static (ServingEngine Engine, DeviceForward Device) Engine(Action<InferenceOptions>? edit = null)
    {
        var o = new InferenceOptions { MaxContext = 64, PrefillChunk = 16, TokenBudget = 32, MaxRunningSequences = 8, PoolBytes = 1 << 20, MaxLoraRank = 8 };
        edit?.Invoke(o);
        var model = IlgpuCpu.Open(ServingHarness.Base);
        return (new ServingEngine(model, new FakeTokenizer(320), o), (DeviceForward)model.Backend!);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AStepBringsBackItsSampledTokensOnlyAndNoKeysOrValues(bool deviceSampling)
    {
        var (e, device) = Engine(o => o.DeviceSampling = deviceSampling);
        using var engine = e;
        const int tokens = 8;
        var events = await Run(e, new GenerationRequest { PromptTokenIds = [5, 17, 3, 9, 40, 2], Sampling = new SamplingParams { Temperature = 0, MaxTokens = tokens, IgnoreEos = true } });
        Assert.Equal(tokens, Tokens(events).Length);
        var t = device.Transfers;
        Assert.Equal(0, t.KvBytes);
        if (deviceSampling) Assert.Equal((0L, tokens * 16L), (t.LogitsBytes, t.SampleBytes)); // a DeviceSample (16 bytes) per step
        else Assert.Equal((tokens * 320L * 4, 0L), (t.LogitsBytes, t.SampleBytes));          // a logits row per step
        await Idle(e);
        Assert.Null(e.Pool.Audit());
    }

    private static GenerationRequest Request(int i) => new()
    {
        PromptTokenIds = Enumerable.Range(0, 8 + i % 5).Select(j => (i * 37 + j * 11) % 320).ToArray(),
        TenantId = i % 2 == 0 ? "a" : "b",
        Sampling = new SamplingParams { Seed = (ulong)(1000 + i), MaxTokens = 12, IgnoreEos = true, Temperature = 0.9f, Logprobs = i % 3 == 0 ? 2 : null },
    };

    /// <summary>Sequences preempted by swap (their pages copied device → host, then host → device pages on swap-in) give
    /// the tokens and logprobs of a run that never preempted. With lazy copies a swap-out's copy runs only when something
    /// waits for it (the latest a copy stream may run it), while the next steps run and allocate the pages others free: the
    /// host copy of the KV must still be the device's.</summary>
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public async Task SwappedSequencesGiveTheTokensOfARunThatNeverSwapped(bool asyncSwap, bool lazyCopies)
    {
        var requests = Enumerable.Range(0, 4).Select(Request).ToArray();
        var (roomy, _) = Engine(); // room for all at once (a batch gives each sequence's tokens alone: GpuForwardTests)
        using var r0 = roomy;
        var expected = await Task.WhenAll(requests.Select(r => Run(roomy, r)));
        Assert.Equal(0, roomy.GetMetrics().Scheduling.Preemptions);

        var (e, device) = Engine(o =>
        {
            o.PoolBytes = 120 * 256; // 60 positions of KV for four sequences of up to 23
            o.SwapSpaceBytes = 1 << 20;
            o.SwapMinTokens = 1;
            o.AsyncSwap = asyncSwap;
        });
        device.LazyCopies = lazyCopies;
        using var pressured = e;
        var outputs = await WhileProgressing(e, Task.WhenAll(requests.Select(r => Run(e, r))), TimeSpan.FromMinutes(1));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(Tokens(expected[i]), Tokens(outputs[i]));
            var a = outputs[i].Where(x => x.Logprobs is not null).Select(x => x.Logprobs!.Logprob).ToArray();
            var b = expected[i].Where(x => x.Logprobs is not null).Select(x => x.Logprobs!.Logprob).ToArray();
            Assert.Equal(b.Length, a.Length);
            if (a.Length > 0) Assert.True(Compare.RelativeError(a, b).Rel < 1e-4, $"request {i}: logprobs differ");
        }
        await Idle(e);
        var m = e.GetMetrics();
        Assert.True(m.Scheduling.Swap.Preemptions > 0, $"no swap: {m}");
        Assert.True(m.Scheduling.Swap.BytesOut > 0);
        // the swapped pages came back from the device (a swap copies the used rows of each page; the device whole pages)
        Assert.True(device.Transfers.KvBytes >= m.Scheduling.Swap.BytesOut, $"{device.Transfers} for {m.Scheduling.Swap.BytesOut} bytes swapped out");
        Assert.Null(e.Pool.Audit());
    }

    /// <summary>The same tenant's next turn starts from the blocks its first turn left in the pool (decision 012): the
    /// device reads them where it wrote them, nothing comes back, and the tokens and logprobs are a full recompute's.</summary>
    [Fact]
    public async Task ANextTurnFromCachedBlocksReadsThemOnTheDeviceAndEqualsAFullRecompute()
    {
        var (cached, device) = Engine(o => o.PrefixCaching = true);
        var (plain, _) = Engine(o => o.PrefixCaching = false);
        using var c = cached;
        using var p = plain;
        int[] prompt = [3, 14, 15, 92, 65, 35, 89, 79];
        var sampling = new SamplingParams { Temperature = 0.8f, Seed = 7, MaxTokens = 6, IgnoreEos = true, Logprobs = 1 };
        GenerationRequest Turn(int[] tokens) => new() { PromptTokenIds = tokens, TenantId = "t", Sampling = sampling };
        float[] Logprobs(List<GenerationEvent> events) => [.. events.Where(x => x.Logprobs is not null).Select(x => x.Logprobs!.Logprob)];

        var first = Tokens(await Run(cached, Turn(prompt)));
        Assert.Equal(6, first.Length);
        Assert.Equal(first, Tokens(await Run(plain, Turn(prompt))));
        int[] next = [.. prompt, .. first, 26, 53];
        var again = await Run(cached, Turn(next));
        var recomputed = await Run(plain, Turn(next));
        Assert.Equal(Tokens(recomputed), Tokens(again));
        Assert.True(Compare.RelativeError(Logprobs(again), Logprobs(recomputed)).Rel < 1e-4, "the next turn's logprobs differ from a full recompute's");
        Assert.True(cached.GetMetrics().Prefix.Hits >= 1, $"{cached.GetMetrics().Prefix}");
        Assert.Equal(0, device.Transfers.KvBytes);
        await Idle(cached);
        Assert.Null(cached.Pool.Audit());
        Assert.Null(cached.AuditPrefixBlocks());
    }
}
