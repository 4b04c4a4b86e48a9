using System.Diagnostics;
using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Suite <c>engine attention</c>: one decode token's attention for one KV group on one thread, the group's
/// query heads computed together (<see cref="Attention.Group64"/>: each key and value row read once) against one head
/// after another (<see cref="Attention.Head"/>), at several context lengths; the SmolLM2-135M group (3 heads of 64)
/// and the Llama-3.2-1B one (4). Without AVX-512, the per-head kernel of the machine's level alone. Rounds alternate the two; the best and the median round of each are printed (the best
/// is the least disturbed by a shared machine).</summary>
internal static class GroupAttentionBenchmark
{
    public static void Run()
    {
        const int hd = 64, kvHeads = 3, rounds = 15;
        var level = Simd.Best;
        Console.WriteLine($"decode attention of one KV group, one thread, {level}; load {File.ReadAllText("/proc/loadavg").Trim()}");
        // blocks of 16 positions, and of 3 (a pool page of the SmolLM2 shape: hidden 576 floats over a KV width of 192)
        foreach (int bs in level == SimdLevel.Vector512 ? [16] : new[] { 16, 3 })
        foreach (int heads in new[] { 3, 4 })
            foreach (int length in new[] { 128, 512, 2048 })
            {
                var rng = new Random(1);
                var cache = new KvCache(1, kvHeads * hd, length, blockSize: bs);
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
                void Grouped() => Attention.Group64(o, q, heads, cache, 0, 1, length, scores, row);
                void PerHead()
                {
                    for (int h = 0; h < heads; h++)
                        Attention.Head(o.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), cache, 0, 1, length, scores, level);
                }
                if (level != SimdLevel.Vector512)
                {
                    // the grouped kernel is AVX-512 only: the per-head kernel of this machine's level alone
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
                Console.WriteLine($"{heads} heads, context {length,4}: grouped {g[0],7:F2} us best ({g[rounds / 2],7:F2} median), per head {p[0],7:F2} us best ({p[rounds / 2],7:F2} median): " +
                    $"grouped / per head {g[0] / p[0]:F2} best, {g[rounds / 2] / p[rounds / 2]:F2} median");
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
