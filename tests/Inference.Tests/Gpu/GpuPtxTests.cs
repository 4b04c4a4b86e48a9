using System.Reflection;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Loom.Inference.Kernels.Gpu;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Gpu;

/// <summary>Without a GPU: every kernel of the GPU backend compiles to PTX for the H100/H200 generation (sm_90), as
/// the CUDA accelerator compiles it at start, so a kernel that only ILGPU's CPU accelerator can run fails here and not
/// on the first machine with a GPU.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuPtxTests(ITestOutputHelper log)
{
    public static TheoryData<string> Kernels() => [.. KernelMethods().Select(Name)];

    private static string Name(MethodInfo m) =>
        $"{m.DeclaringType!.Name}.{m.Name}{(m.IsGenericMethod ? $"<{string.Join(",", m.GetGenericArguments().Select(a => a.Name))}>" : "")}";

    [Theory]
    [MemberData(nameof(Kernels))]
    public void TheKernelCompilesToPtx(string name)
    {
        var method = KernelMethods().Single(m => Name(m) == name);
        using var context = Context.Create(b => b.Cuda().EnableAlgorithms());
        using var backend = new PTXBackend(context, CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, nvvmAPI: null!); // no NVVM (libdevice): ILGPU's own PTX for the math functions
        bool grouped = method.GetParameters()[0].ParameterType != typeof(Index1D);
        var entry = grouped ? EntryPointDescription.FromExplicitlyGroupedKernel(method) : EntryPointDescription.FromImplicitlyGroupedKernel(method);
        var kernel = (PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization());
        log.WriteLine($"{name}: {kernel.PTXAssembly.Length} characters of PTX");
        Assert.Contains(".entry", kernel.PTXAssembly);
    }

    /// <summary>The device entry points (every one GpuKernels loads): the public static void methods of the kernel
    /// classes, the matmuls for both weight types.</summary>
    private static IEnumerable<MethodInfo> KernelMethods() =>
        new[] { typeof(GpuOps), typeof(GpuMatMul), typeof(GpuAttention), typeof(GpuLora), typeof(GpuSampling) }
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => m.ReturnType == typeof(void))
            .SelectMany(m => m.IsGenericMethodDefinition ? [m.MakeGenericMethod(typeof(F32Weights)), m.MakeGenericMethod(typeof(BF16Weights))] : new[] { m });
}
