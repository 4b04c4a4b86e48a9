using System.Diagnostics;
using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Decode and prefill speed of the CPU transformer on random models, against the machine's own limits.</summary>
internal static class EngineBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    private static readonly ModelConfig Llama1B = new()
    {
        ModelType = "llama", HiddenSize = 2048, IntermediateSize = 8192, NumLayers = 16, NumHeads = 32, NumKvHeads = 8,
        HeadDim = 64, VocabSize = 128256, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 500000,
        RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192), MaxPositionEmbeddings = 131072,
    };

    /// <summary>What one model's runs measured, for the plots.</summary>
    internal sealed record ModelRun(string Title, List<(int Batch, double TokensPerSecond)> Decode,
        List<(int Tokens, double TokensPerSecond, double GflopsPerSecond)> Prefill);

    public static void Run(bool quick, bool include1B, string? llamaLog = null, string pngPrefix = "tests/Benchmarks/engine")
    {
        Console.WriteLine($"machine: {Machine.Describe()}");
        double bw = Machine.ReadBandwidth();
        var (peak, corePeak) = Machine.PeakFlops();
        Console.WriteLine($"memory read bandwidth: {bw / 1e9:F1} GB/s (1 GiB array, {(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector512" : "Vector256")} loads, all cores, best of 7)");
        Console.WriteLine($"peak f32 FMA rate:     {peak / 1e9:F1} GFLOP/s (12 independent FMA chains per core, all cores); {corePeak / 1e9:F1} GFLOP per CPU-second");
        Console.WriteLine();

        int[] smolBatches = quick ? [1, 8, 32] : [1, 2, 4, 8, 16, 32];
        var runs = new List<ModelRun>
        {
            Model("SmolLM2-135M shape, f32", Smol, WeightType.F32, bw, peak, corePeak, quick, smolBatches, prefill: true),
            Model("SmolLM2-135M shape, bf16", Smol, WeightType.BF16, bw, peak, corePeak, quick, smolBatches, prefill: true),
            Model("SmolLM2-135M shape, q8", Smol, WeightType.Q8, bw, peak, corePeak, quick, smolBatches, prefill: true),
        };
        Console.WriteLine($"q8 / bf16 decode batch 1, 135M shape: {Batch1(runs[2]) / Batch1(runs[1]):F2}x (target ≥ 1.6x)");
        Console.WriteLine();
        if (include1B)
        {
            var bf16 = Model("Llama-3.2-1B shape, bf16", Llama1B, WeightType.BF16, bw, peak, corePeak, quick, batches: [1, 8], prefill: !quick);
            var q8 = Model("Llama-3.2-1B shape, q8", Llama1B, WeightType.Q8, bw, peak, corePeak, quick, batches: [1, 8], prefill: !quick);
            Console.WriteLine($"q8 / bf16 decode batch 1, 1B shape: {Batch1(q8) / Batch1(bf16):F2}x (target ≥ 1.6x)");
            Console.WriteLine();
        }
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
        EnginePlots.Draw(runs, llamaLog is null ? null : LlamaCppLog.Parse(llamaLog), peak, pngPrefix);
    }

    private static double Batch1(ModelRun run) => run.Decode.First(d => d.Batch == 1).TokensPerSecond;

    private static ModelRun Model(string title, ModelConfig c, WeightType type, double bw, double peak, double corePeak, bool quick, int[] batches, bool prefill)
    {
        var run = new ModelRun(title, [], []);
        var sw = Stopwatch.StartNew();
        using var model = new Transformer(ModelWeights.CreateRandom(c, type, seed: 1), maxContext: 1024);
        long bytes = model.Weights.DecodeBytesPerToken;
        Console.WriteLine($"== {title}: {c.ParameterCount / 1e6:F1}M parameters, {bytes / 1e6:F1} MB of weights read per decode step (random weights made in {sw.Elapsed.TotalSeconds:F1} s)");
        double floorMs = bytes / bw * 1e3;
        double batch1 = 0;
        int promptLen = 16;
        foreach (int b in batches)
        {
            int steps = quick ? 4 : Math.Max(4, (int)(1500 / Math.Max(floorMs * (1 + b / 8.0), 1)));
            steps = Math.Min(steps, 64);
            var state = model.CreateState(Math.Max(b, promptLen), b);
            var caches = Enumerable.Range(0, b).Select(_ => model.CreateCache(promptLen + steps + 16)).ToArray();
            var rng = new Random(b);
            foreach (var cache in caches)
            {
                state.Clear();
                state.Add(cache, Enumerable.Range(0, promptLen).Select(_ => rng.Next(c.VocabSize)).ToArray());
                model.Forward(state);
            }
            var next = new int[b];
            for (int i = 0; i < b; i++) next[i] = rng.Next(c.VocabSize);
            // warm-up steps (the JIT tiers up the kernels), then the timed steps, each timed on its own
            var times = new List<double>();
            var proc = System.Diagnostics.Process.GetCurrentProcess();
            TimeSpan cpu = default;
            for (int s = -3; s < steps; s++)
            {
                if (s == 0)
                {
                    proc.Refresh();
                    cpu = proc.TotalProcessorTime;
                }
                sw.Restart();
                state.Clear();
                for (int i = 0; i < b; i++) state.Add(caches[i], next.AsSpan(i, 1));
                model.Forward(state);
                for (int i = 0; i < b; i++) next[i] = model.Kernels.Argmax(state.Logits(i));
                if (s >= 0) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            proc.Refresh();
            double cpuPerStep = (proc.TotalProcessorTime - cpu).TotalSeconds / steps;
            times.Sort();
            double ms = times[times.Count / 2], best = times[0];
            double tps = b * 1000 / ms;
            run.Decode.Add((b, tps));
            // the FLOPs of the middle timed step (context promptLen + steps/2 for every sequence)
            double stepFlops = b * DecodeFlops(c, promptLen + steps / 2);
            string fma = $"; {stepFlops / ms / 1e6:F1} GFLOP/s = {stepFlops / ms / 1e6 / (peak / 1e9) * 100:F0}% of measured FMA peak, " +
                $"{stepFlops / cpuPerStep / 1e9:F1} GFLOP per CPU-second = {stepFlops / cpuPerStep / corePeak * 100:F0}% of the per-CPU-second peak";
            if (b == 1)
            {
                batch1 = tps;
                Console.WriteLine($"decode batch 1:  {ms,7:F2} ms/token median ({best:F2} best of {steps}), {tps,7:F1} tokens/s; bandwidth floor {floorMs:F2} ms/token → {floorMs / ms * 100:F0}% of the floor's speed (best step {floorMs / best * 100:F0}%; target ≥ 75%){fma}");
            }
            else
            {
                string target = c == Smol && b is 8 or 32 ? $" (target ≥ {(b == 8 ? 6 : 15)}x)" : "";
                Console.WriteLine($"decode batch {b,-2}: {ms,7:F2} ms/step median ({best:F2} best of {steps}), {tps,7:F1} tokens/s = {tps / batch1:F1}x batch 1{target}{fma}");
            }
        }
        if (prefill)
            foreach (int n in quick ? [512] : new[] { 64, 128, 256, 512 })
                run.Prefill.Add(Prefill(model, c, n, peak, corePeak, quick));
        Console.WriteLine();
        return run;
    }

    /// <summary>Times a prefill of <paramref name="n"/> tokens (median of five unless quick) after an untimed one of the
    /// same length (the kernels that only long inputs reach are compiled and tiered up before the timing).</summary>
    private static (int, double, double) Prefill(Transformer model, ModelConfig c, int n, double peak, double corePeak, bool quick)
    {
        var state = model.CreateState(n, 1);
        var tokens = Enumerable.Range(0, n).Select(i => (i * 7919) % c.VocabSize).ToArray();
        state.Clear();
        state.Add(model.CreateCache(n), quick ? tokens.AsSpan(0, Math.Min(32, n)) : tokens);
        model.Forward(state);
        var walls = new List<double>();
        var cpus = new List<double>();
        var proc = Process.GetCurrentProcess();
        var sw = new Stopwatch();
        for (int rep = 0; rep < (quick ? 1 : 5); rep++)
        {
            var cache = model.CreateCache(n);
            state.Clear();
            state.Add(cache, tokens);
            proc.Refresh();
            var cpu0 = proc.TotalProcessorTime;
            sw.Restart();
            model.Forward(state);
            walls.Add(sw.Elapsed.TotalSeconds);
            proc.Refresh();
            cpus.Add((proc.TotalProcessorTime - cpu0).TotalSeconds);
        }
        walls.Sort();
        cpus.Sort();
        double wall = walls[walls.Count / 2], cpu = cpus[cpus.Count / 2];
        double flops = PrefillFlops(c, n);
        Console.WriteLine($"prefill {n,-4}:    {wall * 1e3,7:F0} ms (median of {walls.Count}; best {walls[0] * 1e3:F0}), {n / wall,7:F0} tokens/s, {flops / wall / 1e9:F1} GFLOP/s = {flops / wall / peak * 100:F0}% of measured peak; " +
            $"CPU time {cpu * 1e3:F0} ms: {flops / cpu / 1e9:F1} GFLOP per CPU-second = {flops / cpu / corePeak * 100:F0}% of the per-CPU-second peak (target ≥ 75%)");
        return (n, n / wall, flops / wall / 1e9);
    }

    /// <summary>Multiply-adds ×2 of one decode token at context <paramref name="context"/>: every projection, attention
    /// over the visible positions, and the LM head.</summary>
    private static double DecodeFlops(ModelConfig c, int context)
    {
        double perLayer = 2.0 * c.HiddenSize * (2 * c.QDim + 2 * c.KvDim) + 2.0 * 3 * c.HiddenSize * c.IntermediateSize + 2.0 * 2 * context * c.QDim;
        return c.NumLayers * perLayer + 2.0 * c.HiddenSize * c.VocabSize;
    }

    /// <summary>Multiply-adds ×2 of a causal prefill: projections and MLP for every token, attention scores and
    /// weighted sums over the visible positions, and the LM head for the last token only.</summary>
    private static double PrefillFlops(ModelConfig c, int n)
    {
        double perTokenLayer = 2.0 * c.HiddenSize * (2 * c.QDim + 2 * c.KvDim) + 2.0 * 3 * c.HiddenSize * c.IntermediateSize;
        double attention = 0;
        for (int p = 1; p <= n; p++) attention += 2.0 * 2 * p * c.QDim;
        return c.NumLayers * (n * perTokenLayer + attention) + 2.0 * c.HiddenSize * c.VocabSize;
    }
}
