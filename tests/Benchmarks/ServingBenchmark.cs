using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;

namespace Loom.Benchmarks;

/// <summary>Multi-adapter serving on S-LoRA's workload shape (its trace.py): the adapter of a request is floor(X · N)
/// with X from a power distribution of exponent alpha, inter-arrival times from a Gamma distribution (shape 1/cv²),
/// adapter ranks drawn from {8, 16, 32, 64, 128}, input and output lengths uniform in a range, fixed seed.
/// Everything runs in one process on one model so the ratios compare figures taken side by side.</summary>
internal static class ServingBenchmark
{
    internal static readonly ModelConfig Smol = Shapes.SmolLM2;

    private static readonly int[] Ranks = [8, 16, 32, 64, 128];
    private static readonly LoraTarget[] Targets = [LoraTarget.QProj, LoraTarget.VProj];

    internal sealed record TraceRequest(double Arrival, int Adapter, int[] Prompt, int Output);

    internal sealed record Result(double Seconds, long Generated, long Processed, int Requests, List<double> Ttft, List<double> Tbt,
        int MaxRunning, double MeanRunning, long Loads, long Evictions, long Preemptions)
    {
        public double Throughput => Generated / Seconds;
    }

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        int requests = quick ? 24 : 64;
        (int Lo, int Hi) input = (8, 64), output = (8, 32);
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine($"workload: {requests} requests per run, input length U[{input.Lo},{input.Hi}), output length U[{output.Lo},{output.Hi}) " +
            "(S-LoRA: [8,512) for both; scaled down for two shared cores), ranks from {8,16,32,64,128}, adapters on q_proj and v_proj, seed 7");
        var sw = Stopwatch.StartNew();
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.F32, seed: 1), maxContext: 256);
        Console.WriteLine($"model: SmolLM2-135M shape, f32, random weights ({sw.Elapsed.TotalSeconds:F1} s to build)");

        string root = Directory.CreateTempSubdirectory("loom-serving-bench-").FullName;
        try
        {
            // one PEFT folder per rank; adapter i uses the folder of its (randomly drawn) rank. Registered adapters are
            // distinct entries to the engine (own host-cache copy, own pool pages), their numbers are not.
            var folders = Ranks.Select(r => WriteAdapter(Path.Combine(root, $"r{r}"), r, seed: r)).ToArray();
            var rankRng = new Random(11);
            var rankOf = Enumerable.Range(0, 2000).Select(_ => rankRng.Next(Ranks.Length)).ToArray();

            var options = new InferenceOptions
            {
                MaxContext = 256, PoolBytes = 512L << 20, TokenBudget = 256, MaxRunningSequences = 32, PrefillChunk = 64,
                HostAdapterCacheBytes = 256L << 20, MaxLoraRank = 128,
            };
            Console.WriteLine($"engine: pool {options.PoolBytes >> 20} MiB, token budget {options.TokenBudget}, max running {options.MaxRunningSequences}, " +
                $"prefill chunk {options.PrefillChunk}, host adapter cache {options.HostAdapterCacheBytes >> 20} MiB");
            var engine = new ServingEngine(model, null, options, "smol");
            int registered = 0;
            void RegisterUpTo(int n)
            {
                var t = Stopwatch.StartNew();
                for (; registered < n; registered++) engine.RegisterAdapter($"a{registered}", folders[rankOf[registered]]);
                for (int i = n; i < registered; i++) engine.UnregisterAdapter($"a{i}");
                registered = Math.Max(registered, n);
                if (t.Elapsed.TotalSeconds > 1) Console.WriteLine($"  (registered up to {n} adapters in {t.Elapsed.TotalSeconds:F1} s)");
            }

            // warm-up (JIT tiers, page faults of the pool)
            RegisterUpTo(5);
            Serve(engine, Trace(8, 5, 1, 1, 0, 99, input, output), n => n < 0 ? null : $"a{n}", arrivals: false);

            Console.WriteLine();
            Console.WriteLine("== throughput (all requests queued at t=0, i.e. saturation), alpha = 1");
            var baseTrace = Trace(requests, 1, 1, 1, 0, 7, input, output);
            var baseOnly = Serve(engine, baseTrace, _ => null, arrivals: false);
            Print("base model only", baseOnly);
            var byCount = new Dictionary<int, Result>();
            foreach (int n in new[] { 5, 100, 1000, 2000 })
            {
                RegisterUpTo(n);
                var r = Serve(engine, Trace(requests, n, 1, 1, 0, 7, input, output), a => $"a{a}", arrivals: false);
                byCount[n] = r;
                Print($"{n} adapters", r);
            }
            var m = engine.GetMetrics();
            Console.WriteLine($"host memory with {m.Adapters.Registered} adapters registered: adapter host cache {m.Adapters.HostCacheBytes / 1e6:F0} MB of a {m.Adapters.HostCacheCapacityBytes / 1e6:F0} MB bound " +
                $"({m.Adapters.InHostCache} adapters), {m.Adapters.InPool} in pool; process working set {Process.GetCurrentProcess().WorkingSet64 / 1e6:F0} MB " +
                $"(model {model.Weights.DecodeBytesPerToken / 1e6:F0} MB, pool {options.PoolBytes / 1e6:F0} MB)");
            Console.WriteLine($"2,000 vs 5 adapters: {byCount[2000].Throughput / byCount[5].Throughput * 100:F0}% (target >= 95%); " +
                $"1,000: {byCount[1000].Throughput / byCount[5].Throughput * 100:F0}%; 100: {byCount[100].Throughput / byCount[5].Throughput * 100:F0}%");
            Console.WriteLine($"LoRA vs base model alone: 5 adapters {byCount[5].Throughput / baseOnly.Throughput * 100:F0}%, " +
                $"100 adapters {byCount[100].Throughput / baseOnly.Throughput * 100:F0}% (target >= 90%)");

            Console.WriteLine();
            Console.WriteLine("== skew: 2,000 adapters, alpha in {0.1, 0.3, 0.6}");
            foreach (double alpha in new[] { 0.1, 0.3, 0.6 })
                Print($"alpha {alpha}", Serve(engine, Trace(requests, 2000, alpha, 1, 0, 7, input, output), a => $"a{a}", arrivals: false));

            Console.WriteLine();
            double rate = 0.85 * byCount[100].Requests / byCount[100].Seconds;
            Console.WriteLine($"== latency near saturation: 100 adapters, alpha 1, Gamma arrivals at {rate:F2} requests/s (85% of the measured throughput)");
            RegisterUpTo(100);
            foreach (double cv in new[] { 1.0, 2.0, 4.0 })
            {
                var r = Serve(engine, Trace(requests, 100, 1, cv, rate, 7, input, output), a => $"a{a}", arrivals: true);
                Print($"cv {cv}", r);
                Console.WriteLine($"    time to first token p50 {Pct(r.Ttft, 50) * 1e3:F0} ms, p99 {Pct(r.Ttft, 99) * 1e3:F0} ms; " +
                    $"time between tokens p50 {Pct(r.Tbt, 50) * 1e3:F0} ms, p99 {Pct(r.Tbt, 99) * 1e3:F0} ms");
            }

            Console.WriteLine();
            Console.WriteLine("== unified pool vs fixed KV / adapter partitions of the same total (128 MiB; partition 64 + 64 MiB), 100 adapters, alpha 0.3, max running 64");
            var small = new InferenceOptions
            {
                MaxContext = 256, PoolBytes = 128L << 20, TokenBudget = 256, MaxRunningSequences = 64, PrefillChunk = 64,
                HostAdapterCacheBytes = 256L << 20, MaxLoraRank = 128,
            };
            var splitTrace = Trace(requests, 100, 0.3, 1, 0, 7, input, output);
            foreach (long partition in new[] { 0L, 64L << 20 })
            {
                var e = new ServingEngine(model, null, small, "smol", null, partition);
                for (int i = 0; i < 100; i++) e.RegisterAdapter($"a{i}", folders[rankOf[i]]);
                var r = Serve(e, splitTrace, a => $"a{a}", arrivals: false);
                Print(partition == 0 ? "unified" : "partitioned", r);
            }

            Console.WriteLine();
            Console.WriteLine("== merge-and-swap baseline: merge one adapter into the base weights, serve its queued requests as one batch, unmerge, next");
            var baseline = new ServingEngine(model, null, options, "smol-merged");
            var cache = new Dictionary<string, PeftAdapter>();
            foreach (int n in new[] { 5, 100 })
            {
                var trace = Trace(requests, n, 1, 1, 0, 7, input, output);
                var r = MergeAndSwap(baseline, model, trace, a => cache.TryGetValue(folders[rankOf[a]], out var p) ? p
                    : cache[folders[rankOf[a]]] = PeftAdapter.Load(folders[rankOf[a]], Smol));
                Print($"merge-swap, {n} adapters", r);
                Console.WriteLine($"    unified LoRA serving / merge-swap: {byCount[n].Throughput / r.Throughput:F1}x (target >= 4x)");
            }
            Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
        }
        finally { Directory.Delete(root, true); }
    }

    /// <summary>S-LoRA's trace shape with a fixed seed. rate 0: every request arrives at t = 0.</summary>
    internal static List<TraceRequest> Trace(int count, int adapters, double alpha, double cv, double rate, int seed, (int Lo, int Hi) input, (int Lo, int Hi) output)
    {
        var rng = new Random(seed);
        var list = new List<TraceRequest>();
        double t = 0;
        for (int i = 0; i < count; i++)
        {
            double x = Math.Pow(rng.NextDouble(), 1 / alpha);   // numpy.random.power(alpha): density alpha · x^(alpha-1) on [0, 1]
            int adapter = Math.Min(adapters - 1, (int)(x * adapters));
            if (rate > 0) t += Gamma(rng, 1 / (cv * cv)) * cv * cv / rate;   // mean 1/rate, coefficient of variation cv
            int len = rng.Next(input.Lo, input.Hi);
            var prompt = Enumerable.Range(0, len).Select(_ => rng.Next(Smol.VocabSize)).ToArray();
            list.Add(new TraceRequest(t, adapter, prompt, rng.Next(output.Lo, output.Hi)));
        }
        return list;
    }

    /// <summary>Gamma(shape, 1): Marsaglia and Tsang, with the shape &lt; 1 boost.</summary>
    private static double Gamma(Random rng, double shape)
    {
        if (shape < 1) return Gamma(rng, shape + 1) * Math.Pow(rng.NextDouble(), 1 / shape);
        double d = shape - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double z, v;
            do
            {
                double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
                z = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
                v = 1 + c * z;
            } while (v <= 0);
            v = v * v * v;
            double u = rng.NextDouble();
            if (Math.Log(u) < 0.5 * z * z + d - d * v + d * Math.Log(v)) return d * v;
        }
    }

    internal static Result Serve(ServingEngine e, List<TraceRequest> trace, Func<int, string?> adapterId, bool arrivals) =>
        ServeAsync(e, trace, adapterId, arrivals).GetAwaiter().GetResult();

    private static async Task<Result> ServeAsync(ServingEngine e, List<TraceRequest> trace, Func<int, string?> adapterId, bool arrivals)
    {
        var before = e.GetMetrics();
        var ttft = new List<double>();
        var tbt = new List<double>();
        long generated = 0, processed = 0;
        int maxRunning = 0;
        double runningSum = 0;
        int samples = 0;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                int running = e.GetMetrics().Loop.Running;
                maxRunning = Math.Max(maxRunning, running);
                runningSum += running;
                samples++;
                await Task.Delay(5);
            }
        });
        var clock = Stopwatch.StartNew();
        var tasks = new List<Task>();
        foreach (var r in trace)
        {
            if (arrivals)
            {
                double wait = r.Arrival - clock.Elapsed.TotalSeconds;
                if (wait > 0) await Task.Delay(TimeSpan.FromSeconds(wait));
            }
            var req = new GenerationRequest
            {
                PromptTokenIds = r.Prompt,
                AdapterId = r.Adapter < 0 ? null : adapterId(r.Adapter),
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = r.Output, IgnoreEos = true },
            };
            tasks.Add(Task.Run(async () =>
            {
                double start = clock.Elapsed.TotalSeconds, last = start;
                bool first = true;
                var gaps = new List<double>();
                double firstToken = 0;
                int tokens = 0;
                await foreach (var ev in e.GenerateAsync(req))
                {
                    if (ev.TokenId is null) continue;
                    double now = clock.Elapsed.TotalSeconds;
                    if (first) firstToken = now - start;
                    else gaps.Add(now - last);
                    first = false;
                    last = now;
                    tokens++;
                }
                lock (ttft)
                {
                    ttft.Add(firstToken);
                    tbt.AddRange(gaps);
                    generated += tokens;
                    processed += tokens + r.Prompt.Length;
                }
            }));
        }
        await Task.WhenAll(tasks);
        double seconds = clock.Elapsed.TotalSeconds;
        stop.Cancel();
        await sampler;
        var after = e.GetMetrics();
        return new Result(seconds, generated, processed, trace.Count, ttft, tbt, maxRunning, samples > 0 ? runningSum / samples : 0,
            after.Adapters.Loads - before.Adapters.Loads, after.Adapters.Evictions - before.Adapters.Evictions, after.Scheduling.Preemptions - before.Scheduling.Preemptions);
    }

    /// <summary>The baseline: for the adapter of the oldest queued request, merge it into the base weights, serve every
    /// queued request of that adapter together, unmerge; repeat. Requests all queued at t = 0 (as the throughput runs).</summary>
    private static Result MergeAndSwap(ServingEngine baseEngine, Transformer model, List<TraceRequest> trace, Func<int, PeftAdapter> load)
    {
        var clock = Stopwatch.StartNew();
        var pending = new List<TraceRequest>(trace);
        long generated = 0, processed = 0;
        int groups = 0;
        double mergeSeconds = 0;
        while (pending.Count > 0)
        {
            int a = pending[0].Adapter;
            var group = pending.Where(r => r.Adapter == a).ToList();
            pending.RemoveAll(r => r.Adapter == a);
            var adapter = a < 0 ? null : load(a);
            var t = Stopwatch.StartNew();
            if (adapter is not null) Merge(model, adapter, +1);
            mergeSeconds += t.Elapsed.TotalSeconds;
            var r = Serve(baseEngine, group, _ => null, arrivals: false);
            t.Restart();
            if (adapter is not null) Merge(model, adapter, -1);
            mergeSeconds += t.Elapsed.TotalSeconds;
            generated += r.Generated;
            processed += r.Processed;
            groups++;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"    {groups} merge/unmerge rounds, {mergeSeconds:F1} s of {seconds:F1} s spent merging and unmerging");
        return new Result(seconds, generated, processed, trace.Count, [], [], 0, 0, 0, 0, 0);
    }

    /// <summary>W += sign · scale · B A for every module of the adapter, in the weights' own layout (16-row panels or row-major).</summary>
    private static unsafe void Merge(Transformer model, PeftAdapter adapter, int sign)
    {
        float scale = sign * adapter.Config.Scale;
        foreach (var m in adapter.Modules)
        {
            var l = model.Weights.Layers[m.Layer];
            var w = (m.Target switch { LoraTarget.QProj => l.Q, LoraTarget.KProj => l.K, LoraTarget.VProj => l.V, LoraTarget.OProj => l.O,
                LoraTarget.GateProj => l.Gate, LoraTarget.UpProj => l.Up, _ => l.Down }).Weight;
            if (w.Type != WeightType.F32) throw new NotSupportedException("merge needs f32 weights");
            nint data = (nint)w.Data;
            int cols = w.Cols, r = m.Rank;
            if (w.Packed)
            {
                Parallel.For(0, w.Rows / WeightMatrix.PanelRows, p =>
                {
                    float* panel = (float*)data + (long)p * WeightMatrix.PanelRows * cols;
                    Span<float> b = stackalloc float[16];
                    for (int j = 0; j < r; j++)
                    {
                        for (int i = 0; i < 16; i++) b[i] = scale * m.B[(p * 16 + i) * r + j];
                        var bv = Vector512.Create((ReadOnlySpan<float>)b);
                        for (int k = 0; k < cols; k++)
                            Vector512.FusedMultiplyAdd(bv, Vector512.Create(m.A[j * cols + k]), Vector512.Load(panel + k * 16)).Store(panel + k * 16);
                    }
                });
            }
            else
            {
                Parallel.For(0, w.Rows, o =>
                {
                    var row = new Span<float>((float*)data + (long)o * cols, cols);
                    for (int j = 0; j < r; j++)
                        TensorPrimitives.MultiplyAdd(m.A.AsSpan(j * cols, cols), scale * m.B[o * r + j], row, row);
                });
            }
        }
    }

    private static string WriteAdapter(string folder, int rank, int seed) => WriteAdapter(folder, rank, seed, Targets);

    internal static string WriteAdapter(string folder, int rank, int seed, LoraTarget[] targets)
    {
        var rng = new Random(seed);
        var modules = new List<LoraWeights>();
        for (int l = 0; l < Smol.NumLayers; l++)
            foreach (var t in targets)
            {
                var (i, o) = LoraTargets.Dims(Smol, t);
                modules.Add(new LoraWeights(l, t, rank, i, o, Random(rng, rank * i, 1 / MathF.Sqrt(i)), Random(rng, o * rank, 1 / MathF.Sqrt(rank))));
            }
        PeftAdapterWriter.Write(folder, new PeftAdapterConfig { Rank = rank, Alpha = 2 * rank, Targets = targets }, modules);
        return folder;
    }

    private static float[] Random(Random rng, int n, float std)
    {
        var a = new float[n];
        for (int k = 0; k < n; k++) a[k] = (float)(rng.NextDouble() * 2 - 1) * std * 1.7f;
        return a;
    }

    internal static double Pct(List<double> xs, double p)
    {
        if (xs.Count == 0) return double.NaN;
        var s = xs.OrderBy(x => x).ToArray();
        return s[Math.Min(s.Length - 1, (int)Math.Ceiling(p / 100 * s.Length) - 1)];
    }

    internal static void Print(string what, Result r) =>
        Console.WriteLine($"  {what,-26} {r.Seconds,6:F1} s, {r.Throughput,6:F1} generated tokens/s ({r.Processed / r.Seconds,6:F0} tokens/s incl. prompts), " +
            $"running max {r.MaxRunning} mean {r.MeanRunning:F1}, adapter loads {r.Loads}, evictions {r.Evictions}, preemptions {r.Preemptions}");
}
