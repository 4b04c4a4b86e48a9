using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>An ILGPU context with one accelerator: the first CUDA device, or ILGPU's CPU accelerator (which runs the same
/// kernels thread by thread: far too slow to serve, exact enough to test them).</summary>
public sealed class GpuAccelerator : IDisposable
{
    private readonly Context _context;

    public Accelerator Accelerator { get; }
    /// <summary>"cuda" or "ilgpu-cpu".</summary>
    public string Kind { get; }
    /// <summary>Device name and memory, for logs and /admin/engine.</summary>
    public string Description => $"{Accelerator.Name} ({Accelerator.MemorySize / (1 << 20)} MiB)";
    /// <summary>Threads per group the kernels use: a power of two, at most 256.</summary>
    public int GroupSize { get; }

    private GpuAccelerator(Context context, Accelerator accelerator, string kind)
    {
        _context = context;
        Accelerator = accelerator;
        Kind = kind;
        int g = 1;
        while (g * 2 <= Math.Min(GpuMatMul.MaxGroup, accelerator.MaxNumThreadsPerGroup)) g *= 2;
        GroupSize = g;
    }

    /// <summary>Whether ILGPU lists a CUDA device on this machine (never throws).</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception) { return false; } // no driver, or a driver ILGPU cannot load: no CUDA
    }

    public static GpuAccelerator Cuda()
    {
        var context = Context.Create(b => b.Cuda().EnableAlgorithms());
        if (context.GetCudaDevices().Count == 0)
        {
            context.Dispose();
            throw new InvalidOperationException("Inference:Backend is cuda, but ILGPU lists no CUDA device on this machine");
        }
        return new GpuAccelerator(context, context.CreateCudaAccelerator(0), "cuda");
    }

    /// <summary>ILGPU's CPU accelerator simulating groups of <paramref name="warpsPerGroup"/> warps of
    /// <paramref name="threadsPerWarp"/> threads on <paramref name="multiprocessors"/> workers: the fewer simulated threads
    /// meet at each group barrier, the faster it runs (the kernels work with any power-of-two group size; 32 × 8 gives
    /// CUDA's 256-thread groups and their kernel choices).</summary>
    public static GpuAccelerator Cpu(int threadsPerWarp = 4, int multiprocessors = 0, CPUAcceleratorMode mode = CPUAcceleratorMode.Parallel, int warpsPerGroup = 1)
    {
        var device = new CPUDevice(threadsPerWarp, warpsPerGroup, multiprocessors > 0 ? multiprocessors : Environment.ProcessorCount);
        var context = Context.Create(b => b.CPU(device).EnableAlgorithms());
        return new GpuAccelerator(context, device.CreateCPUAccelerator(context, mode), "ilgpu-cpu");
    }

    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}
