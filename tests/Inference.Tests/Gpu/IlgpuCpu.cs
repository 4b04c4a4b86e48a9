using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;

namespace Loom.Inference.Tests.Gpu;

/// <summary>The GPU tests run one at a time: ILGPU's CPU accelerator runs each kernel on all cores already.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class IlgpuCpu
{
    public const string Name = "ilgpu-cpu";

    /// <summary>The GPU kernels on ILGPU's CPU accelerator, compiled once for the collection.</summary>
    internal static readonly Lazy<GpuKernels> Kernels = new(() => new GpuKernels(GpuAccelerator.Cpu()));

    /// <summary>A model whose forward pass runs on the GPU backend over ILGPU's CPU accelerator.</summary>
    internal static Transformer Open(string name, WeightFormat format = WeightFormat.Auto)
    {
        string dir = Golden.PathOf(name);
        var config = ModelConfig.Load(dir);
        var m = new Transformer(ModelWeights.Load(dir, config, format), maxContext: 64);
        return m.UseBackend(new DeviceForward(GpuAccelerator.Cpu(), m, ownPoolBytes: 4L << 20));
    }
}
