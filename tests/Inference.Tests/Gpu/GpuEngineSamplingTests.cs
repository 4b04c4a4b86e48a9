using Loom.Inference.Engine;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Engine;
using Loom.Inference.Tests.Model;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Gpu;

/// <summary>The engine on ilgpu-cpu samples on the device row by row: a batch mixing device rows (greedy, temperature,
/// top-k, top-p, min-p, logprobs) and host rows (logit bias, penalties) gives the tokens and logprobs of the same engine
/// sampling every row on the host, and of the CPU backend; only the host rows' logits come back.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuEngineSamplingTests
{
    private static InferenceOptions Options(bool deviceSampling) => new()
    {
        MaxContext = 64, PrefillChunk = 8, TokenBudget = 32, MaxRunningSequences = 8, PoolBytes = 1 << 20, MaxLoraRank = 8,
        DeviceSampling = deviceSampling,
    };

    private static GenerationRequest Request(int[] prompt, SamplingParams p) =>
        new() { PromptTokenIds = prompt, Sampling = p with { MaxTokens = 6, IgnoreEos = true } };

    private static readonly GenerationRequest[] Device =
    [
        Request([5, 17, 3, 9], new SamplingParams { Temperature = 0, Logprobs = 3 }),
        Request([40, 2, 7], new SamplingParams { Temperature = 0.9f, TopK = 10, Seed = 1, Logprobs = 0 }),
        Request([1, 2, 3, 4, 5], new SamplingParams { Temperature = 1.2f, TopP = 0.8f, Seed = 2 }),
        Request([9, 9, 8], new SamplingParams { Temperature = 1, MinP = 0.1f, Seed = 3, Logprobs = 2 }),
        Request([7, 3], new SamplingParams { Temperature = 1.5f, Seed = 4 }),
    ];

    private static readonly GenerationRequest[] Host =
    [
        Request([5, 17, 3, 9], new SamplingParams { Temperature = 0.8f, Seed = 5, LogitBias = new Dictionary<int, float> { [11] = 4 }, Logprobs = 1 }),
        Request([12, 13], new SamplingParams { Temperature = 1, TopP = 0.9f, Seed = 6, PresencePenalty = 0.5f }),
    ];

    [Fact]
    public async Task AMixedBatchGivesTheHostSamplersTokensAndOnlyHostRowsBringLogitsBack()
    {
        var model = IlgpuCpu.Open(ServingHarness.Base); // (the engine owns it)
        var device = (DeviceForward)model.Backend!;
        using var onDevice = new ServingEngine(model, new FakeTokenizer(320), Options(deviceSampling: true));
        using var onHost = new ServingEngine(IlgpuCpu.Open(ServingHarness.Base), new FakeTokenizer(320), Options(deviceSampling: false));
        using var cpu = new ServingEngine(GoldenLogitsTests.Open(ServingHarness.Base), new FakeTokenizer(320), Options(deviceSampling: true));
        GenerationRequest[] all = [.. Device, .. Host];

        long logitsBefore = device.Transfers.LogitsBytes;
        var a = await Task.WhenAll(all.Select(r => Run(onDevice, r)));
        long logitsBytes = device.Transfers.LogitsBytes - logitsBefore;
        var b = await Task.WhenAll(all.Select(r => Run(onHost, r)));
        var c = await Task.WhenAll(all.Select(r => Run(cpu, r)));
        for (int i = 0; i < all.Length; i++)
        {
            Assert.Equal(6, Tokens(a[i]).Length);
            Assert.Equal(Tokens(b[i]), Tokens(a[i]));
            Assert.Equal(Tokens(c[i]), Tokens(a[i]));
            if (all[i].Sampling.Logprobs is null) continue;
            float[] La(List<GenerationEvent> e) => [.. e.Where(x => x.Logprobs is not null).SelectMany(x => x.Logprobs!.Top.Select(t => t.Logprob).Prepend(x.Logprobs!.Logprob))];
            Assert.Equal(b[i].Where(x => x.Logprobs is not null).SelectMany(x => x.Logprobs!.Top.Select(t => t.TokenId)), a[i].Where(x => x.Logprobs is not null).SelectMany(x => x.Logprobs!.Top.Select(t => t.TokenId)));
            Assert.True(Compare.RelativeError(La(a[i]), La(b[i])).Rel < 1e-4, $"request {i}: logprobs differ from the host sampler's");
            Assert.True(Compare.RelativeError(La(a[i]), La(c[i])).Rel < 1e-4, $"request {i}: logprobs differ from the CPU backend's");
        }
        // logits came back for the host rows' steps only: one row per token they sampled
        int hostSamples = Host.Length * 6;
        Assert.Equal(4L * model.Config.VocabSize * hostSamples, logitsBytes);
        Assert.True(device.Transfers.SampleBytes > 0, device.Transfers.ToString());
        await Idle(onDevice);
        Assert.Null(onDevice.Pool.Audit());
    }
}
