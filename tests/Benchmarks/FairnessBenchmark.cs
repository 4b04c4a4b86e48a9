using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Scheduling;

namespace Loom.Benchmarks;

/// <summary>Fairness across tenants: one tenant sends four times the others' rate, FCFS vs VTC on the same trace and
/// model, against the well-behaved tenants served alone and against the flood sending exactly its fair share; the service gap between backlogged tenants over time (PNG);
/// swap bandwidth against a plain copy of the same bytes; time spent on preemption.</summary>
internal static class FairnessBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    private static readonly string[] Quiet = ["b", "c"];
    private const string Flood = "flood";

    private sealed record Req(double Arrival, string Tenant, int[] Prompt, int Output);

    private sealed class Outcome
    {
        public readonly Dictionary<string, List<double>> Ttft = [], Tbt = [];
        public readonly List<(double T, Dictionary<string, (double Service, bool Backlogged)> Tenants)> Samples = [];
        public double Seconds;
        public EngineMetrics Before = null!, After = null!;
    }

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        string png = args.SkipWhile(a => a != "--png").Skip(1).FirstOrDefault() ?? "fairness-gap.png";
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        SwapBandwidth();

        var sw = Stopwatch.StartNew();
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.F32, seed: 1), maxContext: 256);
        Console.WriteLine($"model: SmolLM2-135M shape, f32, random weights ({sw.Elapsed.TotalSeconds:F1} s to build)");
        double gap = double.Parse(args.SkipWhile(a => a != "--gap").Skip(1).FirstOrDefault() ?? "64", System.Globalization.CultureInfo.InvariantCulture);
        int swapMin = int.Parse(args.SkipWhile(a => a != "--swap-min").Skip(1).FirstOrDefault() ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        int budget = int.Parse(args.SkipWhile(a => a != "--budget").Skip(1).FirstOrDefault() ?? "256", System.Globalization.CultureInfo.InvariantCulture);
        InferenceOptions Options(SchedulingPolicyKind policy) => new()
        {
            MaxContext = 256, PoolBytes = 128L << 20, TokenBudget = budget, MaxRunningSequences = 16, PrefillChunk = 64,
            SchedulingPolicy = policy, VtcFairnessGap = gap, SwapMinTokens = swapMin,
        };
        var o = Options(SchedulingPolicyKind.Vtc);
        Console.WriteLine($"engine: pool {o.PoolBytes >> 20} MiB, token budget {o.TokenBudget}, max running {o.MaxRunningSequences}, prefill chunk {o.PrefillChunk}; " +
            $"VTC weights {o.VtcInputWeight}/{o.VtcOutputWeight}, fairness gap {gap}, swap from {o.SwapMinTokens} tokens");
        // one engine per run (the model is shared, so none is disposed before the end of the process)
        ServingEngine NewEngine(SchedulingPolicyKind k) => new(model, null, Options(k), "smol");

        (int Lo, int Hi) input = (8, 64), output = (8, 32);
        var warm = NewEngine(SchedulingPolicyKind.Fcfs);
        Serve(warm, Trace(0, 16, 0, input, output, 1), 0);
        // capacity: requests per second with 48 queued at once (after a first burst, so the code is at its final tier)
        Serve(warm, Trace(0, 48, 0, input, output, 3), 0);
        var burst = Serve(warm, Trace(0, 48, 0, input, output, 2), 0);
        double capacity = 48 / burst.Seconds;
        double rate = 0.2 * capacity, seconds = quick ? 15 : 40;
        Console.WriteLine($"capacity: {capacity:F2} requests/s (48 queued at once, {burst.Seconds:F1} s); well-behaved tenants b and c " +
            $"{rate:F2} requests/s each, flood {4 * rate:F2} requests/s (1.2x capacity in all), {seconds} s of arrivals, " +
            $"input U[{input.Lo},{input.Hi}), output U[{output.Lo},{output.Hi}), Poisson arrivals, seed 7");

        var trace = Trace(rate, 0, seconds, input, output, 7);
        var soloTrace = trace.Where(r => r.Tenant != Flood).ToList();
        Console.WriteLine($"trace: {trace.Count} requests ({trace.Count(r => r.Tenant == Flood)} flood)");
        // the baseline that isolates fairness: the flood sends exactly its max-min fair share (what the machine has left
        // after the well-behaved tenants' demand), so the batch is as full as under the flood but nobody exceeds a share
        double fairMultiple = (capacity - 2 * rate) / rate;
        var fairTrace = Trace(rate, 0, seconds, input, output, 7, fairMultiple);
        var solo = Serve(NewEngine(SchedulingPolicyKind.Vtc), soloTrace, seconds);
        var fairShare = Serve(NewEngine(SchedulingPolicyKind.Vtc), fairTrace, seconds);
        var fcfs = Serve(NewEngine(SchedulingPolicyKind.Fcfs), trace, seconds);
        var vtc = Serve(NewEngine(SchedulingPolicyKind.Vtc), trace, seconds);
        Console.WriteLine($"load average at end: {File.ReadAllText("/proc/loadavg").Trim()}");

        Console.WriteLine();
        Console.WriteLine("                     well-behaved (b, c)                        flood");
        Console.WriteLine("run       seconds    TTFT p50   p99       TBT p50   p99          TTFT p50   p99       TBT p50   p99");
        foreach (var (name, r) in new[] { ("solo", solo), ("fair", fairShare), ("FCFS", fcfs), ("VTC", vtc) })
        {
            var q = (Ttft: Quiet.SelectMany(t => r.Ttft.GetValueOrDefault(t, [])).ToList(), Tbt: Quiet.SelectMany(t => r.Tbt.GetValueOrDefault(t, [])).ToList());
            var f = (Ttft: r.Ttft.GetValueOrDefault(Flood, []), Tbt: r.Tbt.GetValueOrDefault(Flood, []));
            Console.WriteLine($"{name,-8} {r.Seconds,7:F1}   {Ms(q.Ttft, 50),7} {Ms(q.Ttft, 99),7}   {Ms(q.Tbt, 50),7} {Ms(q.Tbt, 99),7}        " +
                $"{(f.Ttft.Count == 0 ? "" : $"{Ms(f.Ttft, 50),7} {Ms(f.Ttft, 99),7}   {Ms(f.Tbt, 50),7} {Ms(f.Tbt, 99),7}")}");
        }
        double P99(Outcome r) => Pct(Quiet.SelectMany(t => r.Ttft.GetValueOrDefault(t, [])).ToList(), 99);
        Console.WriteLine($"well-behaved p99 TTFT vs solo: FCFS {P99(fcfs) / P99(solo):F2}x, VTC {P99(vtc) / P99(solo):F2}x");
        Console.WriteLine($"well-behaved p99 TTFT vs the fair-share baseline (flood at {fairMultiple:F1}x, its max-min share; {fairTrace.Count(r => r.Tenant == Flood)} flood requests): " +
            $"FCFS {P99(fcfs) / P99(fairShare):F2}x, VTC {P99(vtc) / P99(fairShare):F2}x (target under VTC <= 1.5x)");
        // more rounds of the two runs the target compares, each on a trace of its own seed; the median ratio is the figure
        int rounds = int.Parse(args.SkipWhile(a => a != "--rounds").Skip(1).FirstOrDefault() ?? "1", System.Globalization.CultureInfo.InvariantCulture);
        var ratios = new List<double> { P99(vtc) / P99(fairShare) };
        for (int round = 1; round < rounds; round++)
        {
            int seed = 7 + round;
            var roundFair = Serve(NewEngine(SchedulingPolicyKind.Vtc), Trace(rate, 0, seconds, input, output, seed, fairMultiple), seconds);
            var roundVtc = Serve(NewEngine(SchedulingPolicyKind.Vtc), Trace(rate, 0, seconds, input, output, seed), seconds);
            ratios.Add(P99(roundVtc) / P99(roundFair));
            Console.WriteLine($"round {round + 1} (seed {seed}): well-behaved p99 TTFT under VTC {P99(roundVtc) * 1e3:F0} ms, fair-share baseline {P99(roundFair) * 1e3:F0} ms: {ratios[^1]:F2}x");
        }
        if (rounds > 1)
        {
            var sorted = ratios.Order().ToList();
            Console.WriteLine($"VTC against the fair-share baseline over {rounds} rounds: median {sorted[sorted.Count / 2]:F2}x " +
                $"(all: {string.Join(", ", ratios.Select(r => $"{r:F2}x"))}; target <= 1.5x); load average {File.ReadAllText("/proc/loadavg").Trim()}");
        }

        foreach (var (name, r) in new[] { ("FCFS", fcfs), ("VTC", vtc) })
        {
            var (a, b) = (r.Before, r.After);
            long pre = b.Scheduling.Preemptions - a.Scheduling.Preemptions, fair = b.Scheduling.FairnessPreemptions - a.Scheduling.FairnessPreemptions, swaps = b.Scheduling.Swap.Preemptions - a.Scheduling.Swap.Preemptions;
            long recompute = b.Scheduling.RecomputeTokens - a.Scheduling.RecomputeTokens, computed = b.Loop.TokensComputed - a.Loop.TokensComputed;
            double copySeconds = (b.Scheduling.Swap.CopyTime - a.Scheduling.Swap.CopyTime).TotalSeconds, waitSeconds = (b.Scheduling.Swap.WaitTime - a.Scheduling.Swap.WaitTime).TotalSeconds;
            // with the copies on their own thread the engine loses only the time it stood waiting for one
            double swapSeconds = b.Scheduling.Swap.Async ? waitSeconds : copySeconds;
            double recomputeSeconds = computed == 0 ? 0 : (double)recompute / computed * r.Seconds; // share of the run's compute
            long iterations = b.Loop.Iterations - a.Loop.Iterations;
            Console.WriteLine($"{name}: {iterations} iterations, {(double)computed / Math.Max(1, iterations):F1} tokens each, {iterations / r.Seconds:F1} per second");
            Console.WriteLine($"{name}: preemptions {pre} ({fair} for fairness, {pre - fair} for memory; {swaps} by swap, {pre - swaps} by recompute), " +
                $"swapped {(b.Scheduling.Swap.BytesOut - a.Scheduling.Swap.BytesOut) / 1e6:F1} MB out / {(b.Scheduling.Swap.BytesIn - a.Scheduling.Swap.BytesIn) / 1e6:F1} MB in, " +
                $"{copySeconds * 1e3:F1} ms of copying ({(b.Scheduling.Swap.Async ? "copy thread" : "engine thread")}), engine waited {waitSeconds * 1e3:F1} ms for copies, " +
                $"{recompute} tokens recomputed of {computed}; preemption time {(swapSeconds + recomputeSeconds) / r.Seconds * 100:F2}% of the run");
        }
        if (vtc.After.Tenants.Count > 0)
            Console.WriteLine("VTC counters at the end: " + string.Join(", ", vtc.After.Tenants.Select(t =>
                $"{t.TenantId} {t.Counter:F0} (in {t.InputTokens}, out {t.OutputTokens}, preempted {t.Preemptions})")));

        var fcfsGap = GapSeries(fcfs);
        var vtcGap = GapSeries(vtc);
        double bound = 2 * trace.Max(r => r.Prompt.Length + 2.0 * r.Output);
        Console.WriteLine($"largest service gap between backlogged tenants: FCFS {fcfsGap.Max(p => p.Gap):F0}, VTC {vtcGap.Max(p => p.Gap):F0} " +
            $"weighted tokens (2x the largest request: {bound:F0})");
        LinePlot.Save(png, $"Service gap between backlogged tenants, one tenant flooding at 4x ({(quick ? "quick run" : "full run")})",
            "time since the first arrival (s)", "largest minus smallest service among backlogged tenants (weighted tokens)",
            [new("FCFS", ScottPlot.Colors.Red, fcfsGap), new("VTC", ScottPlot.Colors.Blue, vtcGap)],
            (bound, "2x the largest request (VTC's bound)"));
        Console.WriteLine($"gap over time written to {Path.GetFullPath(png)}");

        // multi-turn: each turn's prompt is the conversation so far (earlier prompts and answers) plus new tokens
        int conversations = quick ? 4 : 8, turns = 4;
        Console.WriteLine();
        Console.WriteLine($"multi-turn: {conversations} conversations at once, {turns} turns each, first prompt 48 tokens, +24 new tokens per turn, 16 generated per turn");
        foreach (var (name, caching) in new[] { ("without prefix caching", false), ("with prefix caching", true) })
        {
            var oo = Options(SchedulingPolicyKind.Vtc);
            oo.PrefixCaching = caching;
            var e = new ServingEngine(model, null, oo, "smol");
            var (first, later) = MultiTurn(e, conversations, turns);
            var m = e.GetMetrics();
            Console.WriteLine($"  {name,-22} TTFT turn 1 p50 {Ms(first, 50)}, turns 2-{turns} p50 {Ms(later, 50)} p99 {Ms(later, 99)} mean {later.Average() * 1e3:F0} ms; " +
                $"prefix hits {m.Prefix.Hits}, prompt tokens reused {m.Prefix.TokensReused}, tokens computed {m.Loop.TokensComputed}");
        }
    }

    /// <summary>Conversations side by side, each turn sent when the previous answer is complete; time to first token
    /// of the first turns and of the later ones.</summary>
    private static (List<double> First, List<double> Later) MultiTurn(ServingEngine e, int conversations, int turns)
    {
        var first = new List<double>();
        var later = new List<double>();
        var tasks = Enumerable.Range(0, conversations).Select(c => Task.Run(async () =>
        {
            var rng = new Random(100 + c);
            var history = Enumerable.Range(0, 48).Select(_ => rng.Next(Smol.VocabSize)).ToList();
            for (int t = 0; t < turns; t++)
            {
                var req = new GenerationRequest
                {
                    PromptTokenIds = history.ToArray(), TenantId = $"t{c % 3}",
                    Sampling = new SamplingParams { Temperature = 0, MaxTokens = 16, IgnoreEos = true },
                };
                var clock = Stopwatch.StartNew();
                double ttft = -1;
                await foreach (var ev in e.GenerateAsync(req))
                {
                    if (ev.TokenId is not int id) continue;
                    if (ttft < 0) ttft = clock.Elapsed.TotalSeconds;
                    history.Add(id);
                }
                lock (later) (t == 0 ? first : later).Add(ttft);
                history.AddRange(Enumerable.Range(0, 24).Select(_ => rng.Next(Smol.VocabSize)));
            }
        })).ToArray();
        Task.WaitAll(tasks);
        return (first, later);
    }

    /// <summary>Swap of one long sequence's cache (out to host memory and back) against one plain copy of the same bytes.</summary>
    private static unsafe void SwapBandwidth()
    {
        int tokens = 1024;
        using var pool = new PagePool(PagedKvCache.PagesFor(Smol, Smol.HiddenSize, tokens) * 2L * Smol.HiddenSize * sizeof(float), Smol.HiddenSize);
        var cache = PagedKvCache.For(pool, Smol, 1, tokens);
        cache.Reserve(tokens);
        for (int l = 0; l < Smol.NumLayers; l++)
            for (int b = 0; b * cache.BlockSize < tokens; b++) { cache.Keys(l, b).Fill(l + b); cache.Values(l, b).Fill(l - b); }
        cache.Advance(tokens);
        var space = new KvSwapSpace(pool, 1L << 30);
        long bytes = 2L * Smol.NumLayers * tokens * Smol.KvDim * sizeof(float);
        double bestOut = double.MaxValue, bestIn = double.MaxValue;
        for (int i = 0; i < 8; i++)
        {
            var t = Stopwatch.StartNew();
            var s = space.SwapOut(cache)!;
            bestOut = Math.Min(bestOut, t.Elapsed.TotalSeconds);
            cache.Release();
            cache.Reserve(tokens);
            t.Restart();
            space.SwapIn(s, cache);
            bestIn = Math.Min(bestIn, t.Elapsed.TotalSeconds);
        }
        var src = new float[bytes / 4];
        var dst = new float[bytes / 4];
        src.AsSpan().Fill(1);
        dst.AsSpan().Fill(2);
        double bestCopy = double.MaxValue;
        for (int i = 0; i < 8; i++)
        {
            var t = Stopwatch.StartNew();
            src.AsSpan().CopyTo(dst);
            bestCopy = Math.Min(bestCopy, t.Elapsed.TotalSeconds);
        }
        // the same copy split across the cores, as the swap splits a large cache
        double bestParallel = double.MaxValue;
        int cores = Environment.ProcessorCount;
        for (int i = 0; i < 8; i++)
        {
            var t = Stopwatch.StartNew();
            Parallel.For(0, cores, c =>
            {
                int a = (int)((long)src.Length * c / cores), b = (int)((long)src.Length * (c + 1) / cores);
                src.AsSpan(a, b - a).CopyTo(dst.AsSpan(a, b - a));
            });
            bestParallel = Math.Min(bestParallel, t.Elapsed.TotalSeconds);
        }
        double copy = bytes / bestCopy / 1e9, parallel = bytes / bestParallel / 1e9;
        Console.WriteLine($"swap: {tokens} tokens of KV ({bytes / 1e6:F1} MB, {cache.PagesHeld} pages of {pool.PageBytes} B): out {bytes / bestOut / 1e9:F2} GB/s, " +
            $"in {bytes / bestIn / 1e9:F2} GB/s; plain copy of the same bytes {copy:F2} GB/s on one core, {parallel:F2} GB/s on {cores} (best of 8 each): " +
            $"swap out {bytes / bestOut / 1e9 / parallel * 100:F0}% and in {bytes / bestIn / 1e9 / parallel * 100:F0}% of the {cores}-core copy");
    }

    /// <summary>Poisson arrivals: the well-behaved tenants at <paramref name="rate"/> each, the flood at
    /// <paramref name="floodMultiple"/> times that. Each tenant draws from its own generator, so the well-behaved tenants'
    /// requests are the same whatever the flood sends. rate 0: <paramref name="count"/> flood requests at t = 0.</summary>
    private static List<Req> Trace(double rate, int count, double seconds, (int Lo, int Hi) input, (int Lo, int Hi) output, int seed, double floodMultiple = 4)
    {
        var rng = new Random(seed);
        int[] Prompt() => Enumerable.Range(0, rng.Next(input.Lo, input.Hi)).Select(_ => rng.Next(Smol.VocabSize)).ToArray();
        var list = new List<Req>();
        if (rate == 0)
        {
            for (int i = 0; i < count; i++) list.Add(new Req(0, Flood, Prompt(), rng.Next(output.Lo, output.Hi)));
            return list;
        }
        foreach (var (tenant, r, stream) in new[] { (Flood, floodMultiple * rate, 0), (Quiet[0], rate, 1), (Quiet[1], rate, 2) })
        {
            rng = new Random(seed * 31 + stream);
            for (double t = -Math.Log(1 - rng.NextDouble()) / r; t < seconds; t += -Math.Log(1 - rng.NextDouble()) / r)
                list.Add(new Req(t, tenant, Prompt(), rng.Next(output.Lo, output.Hi)));
        }
        return [.. list.OrderBy(r => r.Arrival)];
    }

    private static readonly bool Debug = Environment.GetEnvironmentVariable("LOOM_BENCH_DEBUG") == "1";

    private static Outcome Serve(ServingEngine e, List<Req> trace, double seconds) => ServeAsync(e, trace).GetAwaiter().GetResult();

    private static async Task<Outcome> ServeAsync(ServingEngine e, List<Req> trace)
    {
        var o = new Outcome { Before = e.GetMetrics() };
        var tenants = trace.Select(r => r.Tenant).Distinct().ToArray();
        var service = tenants.ToDictionary(t => t, _ => 0.0);
        var queued = tenants.ToDictionary(t => t, _ => 0);   // submitted, no token yet
        var gate = new Lock();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                lock (gate) o.Samples.Add((clock.Elapsed.TotalSeconds, tenants.ToDictionary(t => t, t => (service[t], queued[t] > 0))));
                await Task.Delay(50);
            }
        });
        var tasks = new List<Task>();
        foreach (var r in trace)
        {
            double wait = r.Arrival - clock.Elapsed.TotalSeconds;
            if (wait > 0) await Task.Delay(TimeSpan.FromSeconds(wait));
            var req = new GenerationRequest
            {
                PromptTokenIds = r.Prompt, TenantId = r.Tenant,
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = r.Output, IgnoreEos = true },
            };
            lock (gate) queued[r.Tenant]++;
            tasks.Add(Task.Run(async () =>
            {
                double start = clock.Elapsed.TotalSeconds, last = start;
                var m0 = Debug ? e.GetMetrics() : null;
                long it0 = m0?.Loop.Iterations ?? 0;
                string Counters(EngineMetrics? m) => m is null ? "" : string.Join(" ", m.Tenants.Select(t => $"{t.TenantId}={t.Counter:F0}/{t.Running}r"));
                bool first = true;
                var gaps = new List<double>();
                double ttft = 0;
                await foreach (var ev in e.GenerateAsync(req))
                {
                    if (ev.TokenId is null) continue;
                    double now = clock.Elapsed.TotalSeconds;
                    lock (gate)
                    {
                        if (first)
                        {
                            queued[r.Tenant]--;
                            service[r.Tenant] += r.Prompt.Length;
                        }
                        service[r.Tenant] += 2;
                    }
                    if (first)
                    {
                        ttft = now - start;
                        if (Debug && r.Tenant != Flood && ttft > 0.2)
                            Console.WriteLine($"  slow: {r.Tenant} at {start:F2}s prompt {r.Prompt.Length} ttft {ttft * 1e3:F0} ms over {e.GetMetrics().Loop.Iterations - it0} iterations; " +
                                $"counters/running at arrival {Counters(m0)}");
                    }
                    else gaps.Add(now - last);
                    first = false;
                    last = now;
                }
                lock (gate)
                {
                    if (first) queued[r.Tenant]--;
                    (o.Ttft.TryGetValue(r.Tenant, out var l) ? l : o.Ttft[r.Tenant] = []).Add(ttft);
                    (o.Tbt.TryGetValue(r.Tenant, out var g) ? g : o.Tbt[r.Tenant] = []).AddRange(gaps);
                }
            }));
        }
        await Task.WhenAll(tasks);
        o.Seconds = clock.Elapsed.TotalSeconds;
        stop.Cancel();
        await sampler;
        o.After = e.GetMetrics();
        return o;
    }

    /// <summary>At each sample, over pairs of tenants both backlogged (a request waiting for its first token) since some
    /// earlier sample: the largest |ΔW_a − ΔW_b| over the intervals within their current common backlog.</summary>
    private static List<(double X, double Gap)> GapSeries(Outcome r)
    {
        var series = new List<(double, double)>();
        var tenants = r.Samples.Count == 0 ? [] : r.Samples[0].Tenants.Keys.ToArray();
        var runs = new Dictionary<(string, string), (double Lo, double Hi)>();
        foreach (var (t, s) in r.Samples)
        {
            double worst = 0;
            for (int i = 0; i < tenants.Length; i++)
                for (int j = i + 1; j < tenants.Length; j++)
                {
                    var key = (tenants[i], tenants[j]);
                    var (wa, ba) = s[tenants[i]];
                    var (wb, bb) = s[tenants[j]];
                    if (!(ba && bb)) { runs.Remove(key); continue; }
                    double d = wa - wb;
                    var (lo, hi) = runs.TryGetValue(key, out var run) ? run : (d, d);
                    runs[key] = (lo = Math.Min(lo, d), hi = Math.Max(hi, d));
                    worst = Math.Max(worst, hi - lo);
                }
            series.Add((t, worst));
        }
        return series;
    }

    private static string Ms(List<double> xs, double p) => xs.Count == 0 ? "-" : $"{Pct(xs, p) * 1e3:F0} ms";

    private static double Pct(List<double> xs, double p)
    {
        if (xs.Count == 0) return double.NaN;
        var s = xs.OrderBy(x => x).ToArray();
        return s[Math.Min(s.Length - 1, (int)Math.Ceiling(p / 100 * s.Length) - 1)];
    }
}
