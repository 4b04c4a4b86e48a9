using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Gpu;

/// <summary>A Q8 model on the GPU backend: its int8 weights are widened to their exact f32 values on upload, so the
/// device computes the dequantized model with its f32 kernels (no activation quantization there).</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuQ8Tests(ITestOutputHelper log)
{
    [Fact]
    public void DeviceRunsTheDequantizedWeights()
    {
        const string name = "qwen2_bias";
        var g = Golden.Load(name);
        using var device = IlgpuCpu.Open(name, WeightFormat.Q8);
        Assert.Equal(WeightType.Q8, device.Weights.Layers[0].Q.Weight.Type);
        // the CPU path on an f32 copy of the same dequantized values
        using var widened = new Transformer(device.Weights.ConvertTo(WeightType.F32), maxContext: 64);
        var onDevice = GoldenLogitsTests.PrefillAll(device, g.Prompts[0]);
        Compare.Close(log, $"{name} q8 on ilgpu-cpu vs its f32 widening on the CPU", onDevice, GoldenLogitsTests.PrefillAll(widened, g.Prompts[0]), 1e-4);
        Compare.Close(log, $"{name} q8 on ilgpu-cpu vs the oracle", onDevice, g.Prefill[0], 5e-2);
    }
}
