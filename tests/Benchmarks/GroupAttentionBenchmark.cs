using System.Diagnostics;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Suite <c>engine attention</c>: one decode token's attention for one KV group on one thread, the group's
/// query heads computed together (<see cref="Attention.Group64"/>: each key and value row read once) against one head
/// after another (<see cref="Attention.Head"/>), at several context lengths; the SmolLM2-135M group (3 heads of 64)
/// and the Llama-3.2-1B one (4). At 256 bits the grouped kernel is <see cref="Attention.Queries64x256"/> (the group's
/// heads block of positions by block of positions). Rounds alternate the two; the best and the median round of each are printed (the best
/// is the least disturbed by a shared machine).</summary>
internal static class GroupAttentionBenchmark
{
    public static void Run()
    {
        const int hd = 64, kvHeads = 3, rounds = 15;
        var level = Simd.Best;
        Console.WriteLine($"decode attention of one KV group, one thread, {level}; load {File.ReadAllText("/proc/loadavg").Trim()}");
        // blocks of 16 positions in a private cache, and of 3 in pool pages as the engine holds them (a page of the SmolLM2
        // shape: hidden 576 floats over a KV width of 192; 64-byte aligned, as the private cache's arrays are not)
        foreach (int bs in new[] { 16, 3 })
        foreach (int heads in new[] { 3, 4 })
            foreach (int length in new[] { 128, 512, 2048 })
            {
                var rng = new Random(1);
                using var pool = new PagePool(2L * length * kvHeads * hd * sizeof(float) + (1 << 20), 576);
                IKvCache cache = bs == 3 ? new PagedKvCache(pool, 0, 1, kvHeads * hd, length) : new KvCache(1, kvHeads * hd, length, blockSize: bs);
                if (cache.BlockSize != bs) throw new InvalidOperationException($"pool pages of {cache.BlockSize} positions");
                cache.Reserve(length);
                for (int b = 0; b * bs < length; b++)
                {
                    var k = cache.Keys(0, b);
                    var v = cache.Values(0, b);
                    for (int i = 0; i < k.Length; i++) k[i] = (float)(rng.NextDouble() * 2 - 1);
                    for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
                }
                cache.Advance(length);
                var q = Enumerable.Range(0, heads * hd).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                var o = new float[heads * hd];
                int row = (length + 15) / 16 * 16;
                var scores = new float[heads * row];
                int reps = Math.Max(20, 4_000_000 / (length * heads));
                void Grouped()
                {
                    if (level == SimdLevel.Vector512) Attention.Group64(o, q, heads, cache, 0, 1, length, scores, row);
                    else Queries(o, q, heads, cache, length, scores, row);
                }
                void PerHead()
                {
                    for (int h = 0; h < heads; h++)
                        Attention.Head(o.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), cache, 0, 1, length, scores, level);
                }
                if (level == SimdLevel.Scalar)
                {
                    var only = new List<double>();
                    for (int r = 0; r < rounds; r++) only.Add(Time(PerHead, reps));
                    only.Sort();
                    Console.WriteLine($"{heads} heads, context {length,4}, blocks of {bs,2}: all heads, one at a time, at {level} {only[0],7:F2} us best ({only[rounds / 2],7:F2} median)");
                    continue;
                }
                var g = new List<double>();
                var p = new List<double>();
                for (int r = 0; r < rounds; r++)
                {
                    g.Add(Time(Grouped, reps));
                    p.Add(Time(PerHead, reps));
                }
                g.Sort();
                p.Sort();
                Console.WriteLine($"{heads} heads, context {length,4}, blocks of {bs,2}: grouped {g[0],7:F2} us best ({g[rounds / 2],7:F2} median), per head {p[0],7:F2} us best ({p[rounds / 2],7:F2} median): " +
                    $"grouped / per head {g[0] / p[0]:F2} best, {g[rounds / 2] / p[rounds / 2]:F2} median");
                (cache as PagedKvCache)?.Release();
            }
    }

    /// <summary>The 256-bit kernel over the group's heads of one token (<see cref="Attention.Queries64x256"/>).</summary>
    private static unsafe void Queries(float[] o, float[] q, int heads, IKvCache cache, int length, float[] scores, int row)
    {
        float** qs = stackalloc float*[heads];
        float** os = stackalloc float*[heads];
        int* lengths = stackalloc int[heads];
        fixed (float* qp = q)
        fixed (float* op = o)
        fixed (float* sp = scores)
        {
            for (int h = 0; h < heads; h++)
            {
                qs[h] = qp + h * 64;
                os[h] = op + h * 64;
                lengths[h] = length;
            }
            Attention.Queries64x256(qs, os, lengths, heads, cache, 0, 1, sp, row);
        }
    }

    private static double Time(Action a, int reps)
    {
        a();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < reps; i++) a();
        return sw.Elapsed.TotalMicroseconds / reps;
    }
}
