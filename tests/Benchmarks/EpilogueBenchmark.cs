using System.Diagnostics;
using Loom.Inference.Kernels;

namespace Loom.Benchmarks;

/// <summary>Suite <c>matmul epilogue</c>: the SmolLM2-135M MLP's matmuls with their epilogues fused against the same
/// products followed by separate passes, side by side in one process (rounds alternate the two): gate/up with SiLU·mul,
/// down with the residual add. CPU time per call of the calling process, median of the rounds.</summary>
internal static class EpilogueBenchmark
{
    public static void Run(string[] args)
    {
        int workers = Array.IndexOf(args, "--workers") is int i and >= 0 ? int.Parse(args[i + 1]) : Environment.ProcessorCount;
        var type = Array.IndexOf(args, "--type") is int j and >= 0 ? Enum.Parse<WeightType>(args[j + 1], ignoreCase: true) : WeightType.BF16;
        const int dim = 576, hidden = 1536, rounds = 9;
        using var pool = new WorkerPool(workers);
        var rng = new Random(1);
        float[] Random(int n) { var v = new float[n]; for (int k = 0; k < n; k++) v[k] = (float)(rng.NextDouble() * 2 - 1) * 0.05f; return v; }
        // as many layers as the model has, so the weights stream from memory as in a forward pass
        const int layers = 30;
        var gates = Enumerable.Range(0, layers).Select(_ => Packed(WeightMatrix.FromFloats(Random(hidden * dim), hidden, dim, type))).ToArray();
        var ups = Enumerable.Range(0, layers).Select(_ => Packed(WeightMatrix.FromFloats(Random(hidden * dim), hidden, dim, type))).ToArray();
        var downs = Enumerable.Range(0, layers).Select(_ => Packed(WeightMatrix.FromFloats(Random(dim * hidden), dim, hidden, type))).ToArray();
        Console.WriteLine($"matmul epilogues, {type}, {workers} worker(s), median of {rounds} alternating rounds; load {File.ReadAllText("/proc/loadavg").Trim()}");
        foreach (int n in new[] { 1, 8, 32, 128 })
        {
            var x = Random(n * dim);
            var h = new float[n * hidden];
            var h2 = new float[n * hidden];
            var xr = Random(n * dim);
            var y = new float[n * dim];
            int reps = Math.Max(4, (int)(3e8 / (4.0 * hidden * dim * Math.Max(n, 8))));
            int layer = 0;
            unsafe void SeparateMlp()
            {
                var (gate, up, down) = (gates[layer], ups[layer], downs[layer]);
                layer = (layer + 1) % layers;
                fixed (float* hp = h)
                fixed (float* h2p = h2)
                fixed (float* xp = x)
                    MatMulKernel.Forward([new MatMulTarget((nint)hp, gate), new MatMulTarget((nint)h2p, up)], xp, n, Simd.Best, pool);
                Ops.SiluMul(h.AsSpan(0, n * hidden), h.AsSpan(0, n * hidden), h2.AsSpan(0, n * hidden));
                MatMulKernel.Forward(y, h, down, n, Simd.Best, pool);
                Ops.AddInPlace(xr, y);
            }
            void FusedMlp()
            {
                var (gate, up, down) = (gates[layer], ups[layer], downs[layer]);
                layer = (layer + 1) % layers;
                MatMulKernel.ForwardSiluMul(h, x, gate, up, n, Simd.Best, pool);
                MatMulKernel.ForwardAdd(xr, h, down, n, Simd.Best, pool);
            }
            var separate = new List<double>();
            var fused = new List<double>();
            var wallSeparate = new List<double>();
            var wallFused = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                (double cpu, double wall) a = Time(SeparateMlp, reps), b = Time(FusedMlp, reps);
                separate.Add(a.cpu); fused.Add(b.cpu); wallSeparate.Add(a.wall); wallFused.Add(b.wall);
            }
            double s = Median(separate), f = Median(fused);
            Console.WriteLine($"MLP n={n,-3}: separate passes {s,8:F1} us CPU ({Median(wallSeparate),8:F1} us wall), fused {f,8:F1} us CPU ({Median(wallFused),8:F1} us wall): fused / separate {f / s:F3} CPU, {Median(wallFused) / Median(wallSeparate):F3} wall");
        }
    }

    private static WeightMatrix Packed(WeightMatrix m)
    {
        if (!m.CanPack || !Loom.Inference.Model.ModelWeights.PackingPays) return m;
        var p = m.Pack();
        m.Dispose();
        return p;
    }

    private static (double Cpu, double Wall) Time(Action a, int reps)
    {
        a();
        var proc = Process.GetCurrentProcess();
        proc.Refresh();
        var cpu0 = proc.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < reps; i++) a();
        double wall = sw.Elapsed.TotalMicroseconds / reps;
        proc.Refresh();
        return ((proc.TotalProcessorTime - cpu0).TotalMicroseconds / reps, wall);
    }

    private static double Median(List<double> v)
    {
        var s = v.Order().ToList();
        return s[s.Count / 2];
    }
}
