using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;

namespace Loom.Gpu.Runner;

/// <summary>S-LoRA's throughput experiment on the Llama-3.2-1B shape: requests with input and output lengths U[8,512),
/// adapters drawn uniformly, all queued at t = 0, served by the engine (continuous batching, unified pool, VTC) on the
/// chosen backend; the base model alone, then 5, 100, 1,000 and 2,000 adapters (rank 8 on q/k/v/o, each a distinct
/// registration of one PEFT folder: own host-cache copy, own pool pages).</summary>
internal static class ServingTrace
{
    private static readonly LoraTarget[] Targets = [LoraTarget.QProj, LoraTarget.KProj, LoraTarget.VProj, LoraTarget.OProj];

    public static int Run(string backend, bool quick, ModelConfig c, int requestsAsked)
    {
        int requests = requestsAsked > 0 ? requestsAsked : quick ? 16 : 256;
        int[] adapterCounts = quick ? [5, 100] : [5, 100, 1000, 2000];
        (int Lo, int Hi) lengths = (8, 512);
        string chosen = InferenceBackends.Resolve(backend);
        var sw = Stopwatch.StartNew();
        var model = Args.On(new Transformer(ModelWeights.CreateRandom(c, WeightType.BF16, seed: 1, pack: chosen == InferenceBackends.Cpu ? null : false), maxContext: 1024), backend);
        var options = new InferenceOptions
        {
            Backend = chosen, MaxContext = 1024, PoolBytes = c == Args.Tiny ? 64L << 20 : 8L << 30, TokenBudget = 1024, MaxRunningSequences = 128, PrefillChunk = 512,
            HostAdapterCacheBytes = 16L << 30, MaxLoraRank = 8, PrefixCaching = false,
        };
        Console.WriteLine($"model: {(c == Args.Tiny ? "tiny" : "Llama-3.2-1B")} shape, bf16, random weights ({sw.Elapsed.TotalSeconds:F1} s); {requests} requests per run, input and output U[{lengths.Lo},{lengths.Hi}), all at t = 0, seed 7");
        Console.WriteLine($"engine: pool {options.PoolBytes >> 30} GiB, token budget {options.TokenBudget}, max running {options.MaxRunningSequences}, prefill chunk {options.PrefillChunk}");
        string folder = Directory.CreateTempSubdirectory("loom-gpu-slora-").FullName;
        try
        {
            WriteAdapter(folder, c, rank: 8, seed: 3);
            using var engine = new ServingEngine(model, null, options, "llama-1b-shape");
            int registered = 0;
            double baseTps = 0, fiveTps = 0;
            var rng = new Random(7);
            var trace = Enumerable.Range(0, requests).Select(_ =>
                (Prompt: Enumerable.Range(0, rng.Next(lengths.Lo, lengths.Hi)).Select(_ => rng.Next(c.VocabSize)).ToArray(),
                 Output: rng.Next(lengths.Lo, lengths.Hi), Pick: rng.NextDouble())).ToArray();
            Serve(engine, trace.Take(Math.Min(8, requests)).ToArray(), _ => null); // warm-up (kernel compilation, page uploads)
            foreach (int n in (int[])[0, .. adapterCounts])
            {
                for (; registered < n; registered++) engine.RegisterAdapter($"a{registered}", folder);
                var (seconds, generated) = Serve(engine, trace, pick => n == 0 ? null : $"a{Math.Min(n - 1, (int)(pick * n))}");
                double tps = generated / seconds;
                string vs = n == 0 ? "" : n == 5 ? $" = {tps / baseTps * 100:F1}% of the base model (target ≥ 90%)" : $" = {tps / fiveTps * 100:F1}% of 5 adapters (2,000: target ≥ 95%)";
                if (n == 0) baseTps = tps;
                if (n == 5) fiveTps = tps;
                Console.WriteLine($"{(n == 0 ? "base model" : $"{n} adapters"),-14} {seconds,7:F1} s, {tps,8:F1} generated tokens/s{vs}");
            }
        }
        finally { Directory.Delete(folder, true); }
        return 0;
    }

    private static (double Seconds, long Generated) Serve(ServingEngine e, (int[] Prompt, int Output, double Pick)[] trace, Func<double, string?> adapter)
    {
        var clock = Stopwatch.StartNew();
        long generated = 0;
        var tasks = trace.Select(r => Task.Run(async () =>
        {
            var req = new GenerationRequest
            {
                PromptTokenIds = r.Prompt,
                AdapterId = adapter(r.Pick),
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = r.Output, IgnoreEos = true },
            };
            long n = 0;
            await foreach (var ev in e.GenerateAsync(req)) if (ev.TokenId is not null) n++;
            Interlocked.Add(ref generated, n);
        })).ToArray();
        Task.WaitAll(tasks);
        return (clock.Elapsed.TotalSeconds, generated);
    }

    private static void WriteAdapter(string folder, ModelConfig c, int rank, int seed)
    {
        var rng = new Random(seed);
        float[] Random(int n, float std)
        {
            var a = new float[n];
            for (int k = 0; k < n; k++) a[k] = (float)(rng.NextDouble() * 2 - 1) * std * 1.7f;
            return a;
        }
        var modules = new List<LoraWeights>();
        for (int l = 0; l < c.NumLayers; l++)
            foreach (var t in Targets)
            {
                var (i, o) = LoraTargets.Dims(c, t);
                modules.Add(new LoraWeights(l, t, rank, i, o, Random(rank * i, 1 / MathF.Sqrt(i)), Random(o * rank, 1 / MathF.Sqrt(rank))));
            }
        PeftAdapterWriter.Write(folder, new PeftAdapterConfig { Rank = rank, Alpha = 2 * rank, Targets = Targets }, modules);
    }
}
