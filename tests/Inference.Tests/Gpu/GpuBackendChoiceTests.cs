using Loom.Inference.Engine;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Sampling;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Inference.Tests.Gpu;

/// <summary>Inference:Backend: the values, what auto means here, a bad value refused at start, and an engine served on
/// ilgpu-cpu giving the oracle's greedy tokens with the engine, scheduler and pool unchanged above it.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuBackendChoiceTests
{
    [Fact]
    public void AutoMeansCudaOnlyWhenIlgpuListsADevice()
    {
        Assert.Equal(GpuAccelerator.CudaAvailable() ? InferenceBackends.Cuda : InferenceBackends.Cpu, InferenceBackends.Resolve("auto"));
        Assert.Equal(InferenceBackends.IlgpuCpu, InferenceBackends.Resolve(" ILGPU-CPU "));
        Assert.Equal(InferenceBackends.Cpu, InferenceBackends.Resolve("cpu"));
    }

    [Fact]
    public void AnUnknownBackendFailsAtStartWithAClearMessage()
    {
        Assert.Equal("Inference:Backend must be one of auto, cpu, cuda, ilgpu-cpu (got 'gpu')", new InferenceOptions { Backend = "gpu" }.Problem());
        Assert.Null(new InferenceOptions { Backend = "ilgpu-cpu" }.Problem());
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Inference:Backend"] = "gpu" }).Build();
        using var sp = new ServiceCollection().AddInference(config).BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredService<IOptions<InferenceOptions>>().Value);
        Assert.Contains("Inference:Backend must be one of auto, cpu, cuda, ilgpu-cpu", e.Message);
        Assert.Throws<ArgumentException>(() => ServingEngine.Load(new InferenceOptions { ModelDirectory = Golden.PathOf("llama_gqa_tied"), Backend = "gpu" }));
    }

    /// <summary>A key of the Inference section that no option reads (a typo, or the removed host-copy prefix cache's
    /// size) fails the start with its name instead of doing nothing.</summary>
    [Fact]
    public void AnUnknownInferenceSettingFailsAtStartWithItsName()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Inference:Backend"] = "cpu",
            ["Inference:PrefixCacheBytes"] = "268435456",
            ["Inference:Models:0:Name"] = "second",
            ["Inference:Models:0:Directory"] = "/nowhere",
        }).Build();
        using var sp = new ServiceCollection().AddInference(config).BuildServiceProvider();
        var e = Assert.Throws<InvalidOperationException>(() => sp.GetRequiredService<IOptions<InferenceOptions>>().Value);
        Assert.Contains("PrefixCacheBytes", e.Message);
        Assert.DoesNotContain("Models", e.Message); // the known nested settings bind as before

        var known = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Inference:Backend"] = "cpu",
            ["Inference:PrefixCaching"] = "false",
            ["Inference:ModelDirectory"] = "/first",
            ["Inference:Models:0:Name"] = "second",
            ["Inference:Models:0:Directory"] = "/nowhere",
            ["Inference:Models:0:WeightFormat"] = "BF16",
        }).Build();
        using var sp2 = new ServiceCollection().AddInference(known).BuildServiceProvider();
        var o = sp2.GetRequiredService<IOptions<InferenceOptions>>().Value;
        Assert.False(o.PrefixCaching);
        Assert.Equal("second", Assert.Single(o.Models).Name);
    }

    /// <summary>Inference:KvCacheFormat = bf16 for a model that runs on a GPU backend (as when auto chooses cuda) is
    /// refused by the engine, naming the option: the device kernels read f32 pages.</summary>
    [Fact]
    public void Bf16KvOnAModelOnAGpuBackendIsRefused()
    {
        using var model = Model.GoldenLogitsTests.Open("llama_gqa_tied");
        InferenceBackends.Apply(model, InferenceBackends.IlgpuCpu);
        var e = Assert.Throws<ArgumentException>(() => new ServingEngine(model, null, new InferenceOptions { KvCacheFormat = Loom.Inference.Model.KvCacheFormat.Bf16 }));
        Assert.StartsWith("Inference:KvCacheFormat = bf16 is supported by the CPU backend only, and this model runs on ilgpu-cpu", e.Message);
    }

    [Fact]
    public void CudaWithoutADeviceFailsClearly()
    {
        if (GpuAccelerator.CudaAvailable()) return; // a machine with a GPU runs tests/Gpu.Runner instead
        var e = Assert.Throws<InvalidOperationException>(() => InferenceBackends.Resolve("cuda") == "cuda" ? GpuAccelerator.Cuda() : null);
        Assert.Contains("no CUDA device", e.Message);
    }

    [Fact]
    public async Task AnEngineOnIlgpuCpuGeneratesTheOraclesGreedyTokens()
    {
        var g = Golden.Load("llama3_scaled_bf16");
        using var e = ServingEngine.Load(new InferenceOptions
        {
            ModelDirectory = g.Directory, Backend = "ilgpu-cpu", MaxContext = 64, PoolBytes = 1 << 20, PrefillChunk = 4, TokenBudget = 16, MaxRunningSequences = 2,
        });
        Assert.StartsWith("ilgpu-cpu: ", e.Model.Backend);
        var tokens = new List<int>();
        await foreach (var ev in e.GenerateAsync(new GenerationRequest { PromptTokenIds = g.Prompts[0], Sampling = new SamplingParams { Temperature = 0, MaxTokens = 3 } }))
            if (ev.TokenId is int t) tokens.Add(t);
        Assert.Equal(g.DecodeTokens.Take(3), tokens);
    }
}
