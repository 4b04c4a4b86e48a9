using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using static Loom.Benchmarks.ServingBenchmark;

namespace Loom.Benchmarks;

/// <summary>Adapter scaling in S-LoRA's own setting: rank 8 on q, k, v and o, every registered adapter held in host
/// memory (S-LoRA loads them all at start), the same trace shape as the `serving` suite. Measures registration of 10,000
/// adapters (config only, as the platform registers uploads it validated and hash-checked), the time to warm the host
/// store, and throughput with 5, 100, 1,000 and 2,000 adapters over several rounds (median reported); then mixed ranks
/// {8..128} on the same modules with a bounded host cache (holding 2,000 of them would take ~54 GB here).</summary>
internal static class SLoraSettingBenchmark
{
    private static readonly LoraTarget[] Qkvo = [LoraTarget.QProj, LoraTarget.KProj, LoraTarget.VProj, LoraTarget.OProj];
    private static readonly int[] MixedRanks = [8, 16, 32, 64, 128];

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        int rounds = ArgInt(args, "--rounds", quick ? 1 : 3), requests = quick ? 24 : 64;
        (int Lo, int Hi) input = (8, 64), output = (8, 32);
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine($"workload: {requests} requests per run, input U[{input.Lo},{input.Hi}), output U[{output.Lo},{output.Hi}), adapters on " +
            $"q, k, v, o_proj, alpha 1 (S-LoRA's trace shape), {rounds} round(s), median reported");
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.F32, seed: 1), maxContext: 256);
        string root = Directory.CreateTempSubdirectory("loom-slora-bench-").FullName;
        try
        {
            // five rank-8 folders with different weights (adapter i reads folder i % 5), one folder per mixed rank
            var rank8 = Enumerable.Range(0, 5).Select(i => WriteAdapter(Path.Combine(root, $"r8-{i}"), 8, 100 + i, Qkvo)).ToArray();
            var mixed = MixedRanks.Select(r => WriteAdapter(Path.Combine(root, $"m{r}"), r, r, Qkvo)).ToArray();
            long imageBytes = AdapterImage.Build(PeftAdapter.Load(rank8[0], Smol), Smol.HiddenSize).Bytes;

            Console.WriteLine();
            Console.WriteLine("== registration (a fresh engine each)");
            Registration(model, rank8, validated: true, count: quick ? 2000 : 10000);
            Registration(model, rank8, validated: false, count: quick ? 100 : 500);

            Console.WriteLine();
            Console.WriteLine($"== S-LoRA's setting: rank 8, host store holds every registered adapter ({imageBytes / 1e6:F1} MB each as pool pages)");
            var options = Options(hostBytes: 2000 * imageBytes + (64L << 20));
            var engine = new ServingEngine(model, null, options, "smol");
            int registered = 0;
            var warm = Serve(engine, Trace(8, 1, 1, 1, 0, 99, input, output), _ => null, arrivals: false); // JIT, pool pages
            var baseRuns = new List<double>();
            var byCount = new Dictionary<int, List<double>> { [5] = [], [100] = [], [1000] = [], [2000] = [] };
            for (int round = 0; round < rounds; round++)
            {
                Console.WriteLine($"round {round + 1}:");
                var b = Serve(engine, Trace(requests, 1, 1, 1, 0, 7, input, output), _ => null, arrivals: false);
                Print("base model only", b);
                baseRuns.Add(b.Throughput);
                foreach (int n in byCount.Keys.Order())
                {
                    for (; registered < n; registered++) engine.RegisterAdapter($"a{registered}", rank8[registered % 5], validated: true);
                    WarmHostStore(engine, n);
                    var r = Serve(engine, Trace(requests, n, 1, 1, 0, 7 + round, input, output), a => $"a{a}", arrivals: false);
                    Print($"{n} adapters", r);
                    byCount[n].Add(r.Throughput);
                }
            }
            double m5 = Median(byCount[5]);
            Console.WriteLine($"median tokens/s: base {Median(baseRuns):F1}, " + string.Join(", ", byCount.Select(kv => $"{kv.Key} adapters {Median(kv.Value):F1}")));
            Console.WriteLine($"2,000 vs 5 adapters: {Median(byCount[2000]) / m5 * 100:F0}% (target >= 95%); 1,000: {Median(byCount[1000]) / m5 * 100:F0}%; " +
                $"100: {Median(byCount[100]) / m5 * 100:F0}%; 5 adapters vs base: {m5 / Median(baseRuns) * 100:F0}%");
            var metrics = engine.GetMetrics().Adapters;
            Console.WriteLine($"host store: {metrics.InHostCache} adapters, {metrics.HostCacheBytes / 1e9:F2} GB; process working set " +
                $"{Process.GetCurrentProcess().WorkingSet64 / 1e9:F2} GB");
            for (int i = 0; i < registered; i++) engine.UnregisterAdapter($"a{i}"); // frees the host store before the next part

            Console.WriteLine();
            // A rank-128 adapter on q, k, v, o is 13% of this small model's bytes (70 MB against 538 MB; for S-LoRA's 7B fp16
            // model the same adapter is 2%), so the pool is sized as S-LoRA's is relative to its model: an A100-80GB
            // serving a 13.5 GB model leaves about four times the model's bytes to the pool.
            long mixedCache = 4L << 30, mixedPool = 4 * model.Weights.DecodeBytesPerToken;
            Console.WriteLine($"== mixed ranks {{8,16,32,64,128}} on q, k, v, o; pool {mixedPool >> 20} MiB (4x the model, as S-LoRA's pool is to its model), " +
                $"host cache {mixedCache >> 30} GiB (bounded: 2,000 such adapters take ~54 GB), warmed with each trace's adapters before it runs");
            var rankRng = new Random(11);
            var rankOf = Enumerable.Range(0, 2000).Select(_ => rankRng.Next(MixedRanks.Length)).ToArray();
            // the same trace over f32 and bf16 adapter pages (Inference:AdapterPageFormat), round by round side by side
            AdapterPageFormat[] formats = [AdapterPageFormat.F32, AdapterPageFormat.Bf16];
            var mixedEngines = formats.Select(f =>
            {
                var o = Options(mixedCache, mixedPool);
                o.AdapterPageFormat = f;
                return new ServingEngine(model, null, o, $"smol-mixed-{f.Name()}");
            }).ToArray();
            var mixedRegistered = new int[formats.Length];
            var mixedByCount = formats.Select(_ => new Dictionary<int, List<double>> { [5] = [], [2000] = [] }).ToArray();
            for (int round = 0; round < rounds; round++)
                for (int f = 0; f < formats.Length; f++)
                    foreach (int n in mixedByCount[f].Keys.Order())
                    {
                        var mixedEngine = mixedEngines[f];
                        for (; mixedRegistered[f] < n; mixedRegistered[f]++)
                            mixedEngine.RegisterAdapter($"m{mixedRegistered[f]}", mixed[rankOf[mixedRegistered[f]]], validated: true);
                        var trace = Trace(requests, n, 1, 1, 0, 7 + round, input, output);
                        // S-LoRA holds every adapter in host memory; 2,000 of these do not fit here, so the host cache is warmed
                        // with the ones this trace uses (as S-LoRA's would hold them) before the clock starts
                        mixedEngine.Adapters.Prefetch(trace.Select(t => $"m{t.Adapter}")).GetAwaiter().GetResult();
                        var r = Serve(mixedEngine, trace, a => $"m{a}", arrivals: false);
                        Print($"mixed, {formats[f].Name()} pages, {n} adapters", r);
                        mixedByCount[f][n].Add(r.Throughput);
                    }
            for (int f = 0; f < formats.Length; f++)
                Console.WriteLine($"mixed ranks, {formats[f].Name()} adapter pages, 2,000 vs 5 adapters: " +
                    $"{Median(mixedByCount[f][2000]) / Median(mixedByCount[f][5]) * 100:F0}% (target >= 84%; S-LoRA: 6.73 / 8.05 req/s = 84%); " +
                    $"medians {Median(mixedByCount[f][5]):F1} / {Median(mixedByCount[f][2000]):F1} tokens/s");
            Console.WriteLine($"bf16 / f32 pages: 5 adapters {Median(mixedByCount[1][5]) / Median(mixedByCount[0][5]):F2}x, " +
                $"2,000 adapters {Median(mixedByCount[1][2000]) / Median(mixedByCount[0][2000]):F2}x");
            string png = args.SkipWhile(x => x != "--png").Skip(1).FirstOrDefault() ?? "tests/Benchmarks/serving-adapters.png";
            LinePlot.Save(png, $"Throughput against adapters (S-LoRA's trace, {requests} requests, median of {rounds})",
                "adapters registered (requests spread over them, alpha 1)", "generated tokens/s",
                [
                    new("rank 8 on q, k, v, o; every adapter in host memory", ScottPlot.Colors.Blue, [.. byCount.OrderBy(kv => kv.Key).Select(kv => ((double)kv.Key, Median(kv.Value)))]),
                    new($"ranks 8..128 on q, k, v, o, f32 pages; pool {mixedPool >> 20} MiB, host cache {mixedCache >> 30} GiB", ScottPlot.Colors.OrangeRed,
                        [.. mixedByCount[0].OrderBy(kv => kv.Key).Select(kv => ((double)kv.Key, Median(kv.Value)))]),
                    new("ranks 8..128 on q, k, v, o, bf16 pages (Inference:AdapterPageFormat = bf16)", ScottPlot.Colors.Green,
                        [.. mixedByCount[1].OrderBy(kv => kv.Key).Select(kv => ((double)kv.Key, Median(kv.Value)))]),
                ],
                (Median(baseRuns), "base model alone"), legend: ScottPlot.Alignment.LowerLeft);   // the lines run high: keep the legend below them
            Console.WriteLine($"plot: {Path.GetFullPath(png)}");
            Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
        }
        finally { Directory.Delete(root, true); }
    }

    private static InferenceOptions Options(long hostBytes, long poolBytes = 512L << 20) => new()
    {
        MaxContext = 256, PoolBytes = poolBytes, TokenBudget = 256, MaxRunningSequences = 32, PrefillChunk = 64,
        HostAdapterCacheBytes = hostBytes, MaxLoraRank = 128,
    };

    private static void Registration(Transformer model, string[] folders, bool validated, int count)
    {
        var engine = new ServingEngine(model, null, Options(1L << 30), "smol-reg");
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < count; i++) engine.RegisterAdapter($"r{i}", folders[i % folders.Length], validated);
        double s = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"  {(validated ? "config only (validated at upload)" : "full validation"),-34} {count,6} adapters in {s,6:F2} s: " +
            $"{s / count * 1e6,7:F0} us each; 10,000 would take {s / count * 10000:F1} s (target < 5 s)");
        for (int i = 0; i < count; i++) engine.UnregisterAdapter($"r{i}");
    }

    /// <summary>S-LoRA holds every adapter in host memory before serving: read the first <paramref name="n"/> into the host
    /// store (timed; the reads after the first fill only what is new).</summary>
    private static void WarmHostStore(ServingEngine engine, int n)
    {
        var sw = Stopwatch.StartNew();
        engine.Adapters.Prefetch(Enumerable.Range(0, n).Select(i => $"a{i}")).GetAwaiter().GetResult();
        var m = engine.Adapters.Metrics();
        if (sw.Elapsed.TotalSeconds > 0.5)
            Console.WriteLine($"  (host store warmed to {m.AdaptersInHostCache} adapters in {sw.Elapsed.TotalSeconds:F1} s)");
        if (m.AdaptersInHostCache + m.AdaptersInPool < n) throw new InvalidOperationException($"the host store holds {m.AdaptersInHostCache} of {n} adapters");
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static int ArgInt(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out int v) ? v : fallback;
    }
}
