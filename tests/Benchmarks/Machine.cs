using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Loom.Benchmarks;

/// <summary>What the machine can do: read bandwidth from memory and peak f32 FMA rate, with all cores.</summary>
internal static unsafe class Machine
{
    /// <summary>Sums a 1 GiB array with wide vector loads (4 independent accumulators), one slice per core; best of several passes, bytes/s.</summary>
    public static double ReadBandwidth(long bytes = 1L << 30, int passes = 7)
    {
        long n = bytes / 4;
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            int workers = Environment.ProcessorCount;
            nint d = (nint)data;
            Parallel.For(0, workers, w =>
            {
                long a = n * w / workers, b = n * (w + 1) / workers;
                for (long i = a; i < b; i++) ((float*)d)[i] = (i & 1023) * 1e-3f;
            });
            double best = 0;
            float sink = 0;
            for (int p = 0; p < passes; p++)
            {
                var partial = new float[workers];
                var sw = Stopwatch.StartNew();
                Parallel.For(0, workers, w =>
                {
                    long a = (n * w / workers) & ~63L, b = w == workers - 1 ? n : (n * (w + 1) / workers) & ~63L;
                    float* x = (float*)d;
                    if (Vector512.IsHardwareAccelerated)
                    {
                        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
                        long i = a;
                        for (; i + 64 <= b; i += 64)
                        {
                            s0 += Vector512.Load(x + i); s1 += Vector512.Load(x + i + 16);
                            s2 += Vector512.Load(x + i + 32); s3 += Vector512.Load(x + i + 48);
                        }
                        float s = Vector512.Sum(s0 + s1 + s2 + s3);
                        for (; i < b; i++) s += x[i];
                        partial[w] = s;
                    }
                    else
                    {
                        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
                        long i = a;
                        for (; i + 32 <= b; i += 32)
                        {
                            s0 += Vector256.Load(x + i); s1 += Vector256.Load(x + i + 8);
                            s2 += Vector256.Load(x + i + 16); s3 += Vector256.Load(x + i + 24);
                        }
                        float s = Vector256.Sum(s0 + s1 + s2 + s3);
                        for (; i < b; i++) s += x[i];
                        partial[w] = s;
                    }
                });
                double t = sw.Elapsed.TotalSeconds;
                sink += partial.Sum();
                best = Math.Max(best, bytes / t);
            }
            if (sink == 42) Console.Write("");
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>Peak f32 fused multiply-add rate with all cores: 12 independent vector FMA chains per core (FLOP/s, 2 per FMA lane).</summary>
    /// <summary>Also returns the rate per CPU-second (one core's peak, unaffected by time slices lost to other processes).</summary>
    public static (double Wall, double PerCpuSecond) PeakFlops(long iterations = 20_000_000, int passes = 3)
    {
        int workers = Environment.ProcessorCount;
        int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
        double best = 0, bestCpu = 0;
        var proc = Process.GetCurrentProcess();
        for (int p = 0; p < passes; p++)
        {
            var results = new float[workers];
            proc.Refresh();
            var cpu0 = proc.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            Parallel.For(0, workers, w => results[w] = Vector512.IsHardwareAccelerated ? Fma512(iterations) : Fma256(iterations));
            double t = sw.Elapsed.TotalSeconds;
            proc.Refresh();
            double cpu = (proc.TotalProcessorTime - cpu0).TotalSeconds;
            double flop = workers * iterations * 12.0 * lanes * 2;
            best = Math.Max(best, flop / t);
            bestCpu = Math.Max(bestCpu, flop / cpu);
            if (results.Sum() == 42) Console.Write("");
        }
        return (best, bestCpu);
    }

    private static float Fma512(long n)
    {
        var m = Vector512.Create(0.999999f);
        var c = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c); a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c); a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    private static float Fma256(long n)
    {
        var m = Vector256.Create(0.999999f);
        var c = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256.Create(1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < n; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c);
            a2 = Vector256.FusedMultiplyAdd(a2, m, c); a3 = Vector256.FusedMultiplyAdd(a3, m, c);
            a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c);
            a8 = Vector256.FusedMultiplyAdd(a8, m, c); a9 = Vector256.FusedMultiplyAdd(a9, m, c);
            a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    public static string Describe()
    {
        string cpu = "unknown CPU";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";
        return $"{cpu}, {Environment.ProcessorCount} cores, Vector512 {(Vector512.IsHardwareAccelerated ? "yes" : "no")}, " +
               $".NET {Environment.Version}, load average {load}";
    }
}
