using System.Diagnostics;
using Loom.Inference.Kernels;

namespace Loom.Benchmarks;

/// <summary>The matmul kernel alone: GFLOP/s and GB/s of weights for several batch sizes.
/// Arguments: [rows cols [n,n,...]]. The column-panel layout is timed only where its kernel runs (AVX-512); at 256 bits
/// the engine keeps weights row-major.</summary>
internal static class MatMulBenchmark
{
    public static void Run(string[] args)
    {
        foreach (var (rows, cols) in args.Length > 0 ? [(int.Parse(args[0]), int.Parse(args[1]))] : new[] { (1536, 576), (576, 1536), (8192, 2048) })
            foreach (var type in new[] { WeightType.F32, WeightType.BF16, WeightType.Q8 })
            foreach (bool packed in System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? new[] { false, true } : new[] { false })
            {
                using var rowMajor = WeightMatrix.FromFloats(new float[rows * cols], rows, cols, type);
                if (packed && !rowMajor.CanPack) continue;
                using var w = packed ? rowMajor.Pack() : WeightMatrix.FromFloats(new float[rows * cols], rows, cols, type);
                foreach (int n in args.Length > 2 ? args[2].Split(',').Select(int.Parse) : new[] { 1, 8, 32, 512 })
                {
                    var x = new float[n * cols];
                    var y = new float[n * rows];
                    // warm up for half a second, not a fixed count: a kernel called a few dozen times stays in the
                    // JIT's first tier, and the figure would time that code, not the optimized kernel
                    var warm = Stopwatch.StartNew();
                    for (int i = 0; i < 3 || warm.Elapsed.TotalSeconds < 0.5; i++) MatMulKernel.Forward(y, x, w, n, Simd.Best);
                    int reps = Math.Max(3, (int)(2e9 / (2.0 * rows * cols * n + 1e7)));
                    var proc = Process.GetCurrentProcess();
                    var cpu0 = proc.TotalProcessorTime;
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < reps; i++) MatMulKernel.Forward(y, x, w, n, Simd.Best);
                    double t = sw.Elapsed.TotalSeconds / reps;
                    proc.Refresh();
                    double cpu = (proc.TotalProcessorTime - cpu0).TotalSeconds / reps;
                    Console.WriteLine($"[{rows}x{cols}] {type,-4} {(packed ? "panels " : "rows   ")} n={n,-3}: {t * 1e6,8:F0} us, {2.0 * rows * cols * n / t / 1e9,6:F1} GFLOP/s, {w.ByteCount / t / 1e9,6:F1} GB/s of weights; {2.0 * rows * cols * n / cpu / 1e9,6:F1} GFLOP per CPU-second");
                }
            }
    }
}
