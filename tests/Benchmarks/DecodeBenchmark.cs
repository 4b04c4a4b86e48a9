using System.Diagnostics;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Suite <c>engine decode</c>: one decode figure alone, for A/B runs of two builds back to back (a bisect). The
/// SmolLM2-135M shape with random weights of one type, a batch of sequences after a 16-token prompt each, then decode
/// steps: first for a warm-up time (the JIT's tiers and dynamic PGO settle on the kernels of this weight type), then
/// timed steps, each on its own; prints the median and best step, and the process's CPU time per timed step. With
/// <c>--workers 1</c> the kernels run on the calling thread alone: its CPU time per step measures the code, little
/// disturbed by a shared machine's load (no thread waits for a descheduled one). <c>--unfused</c>: the forward pass
/// without its fused epilogues (separate residual-add and SiLU·mul passes), for an A/B of the fusion in one build;
/// <c>--prefill N</c>: each timed step is a prefill of N tokens on a fresh cache instead of a decode step; <c>--prompt N</c>:
/// the decode steps start after N-token prompts (long contexts, where attention weighs); <c>--kv f32,bf16</c>: the caches
/// are pool pages as the engine's, in each KV format listed, measured one after the other in each of <c>--rounds N</c>
/// rounds (one process: the same machine state), then the median of each format's round medians.</summary>
internal static class DecodeBenchmark
{
    public static void Run(string[] args)
    {
        var type = Enum.Parse<WeightType>(Value(args, "--type") ?? "BF16", ignoreCase: true);
        int batch = int.Parse(Value(args, "--batch") ?? "1");
        int steps = int.Parse(Value(args, "--steps") ?? "200");
        double warmup = double.Parse(Value(args, "--warmup-seconds") ?? "3", System.Globalization.CultureInfo.InvariantCulture);
        int workers = int.Parse(Value(args, "--workers") ?? Environment.ProcessorCount.ToString());
        var c = Shapes.SmolLM2;
        int prompt = int.Parse(Value(args, "--prompt") ?? "16");
        int context = Math.Max(1024, prompt + 512);
        using var model = new Transformer(ModelWeights.CreateRandom(c, type, seed: 1), new CpuKernels(Simd.Best, workers), maxContext: context);
        model.FuseEpilogues = !args.Contains("--unfused");
        if (Value(args, "--prefill") is { } prefill)
        {
            Prefill(model, type, int.Parse(prefill), steps, warmup, workers);
            return;
        }
        if (Value(args, "--kv") is { } kv)
        {
            var formats = kv.Split(',').Select(f => Enum.Parse<KvCacheFormat>(f.Trim(), ignoreCase: true)).ToArray();
            int rounds = int.Parse(Value(args, "--rounds") ?? "3");
            var medians = formats.ToDictionary(f => f, _ => new List<double>());
            for (int r = 0; r < rounds; r++)
                foreach (var f in formats) medians[f].Add(Decode(model, type, batch, steps, warmup, workers, prompt, context, f));
            double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
            foreach (var f in formats)
                Console.WriteLine($"KV {f.Name()}: decode batch {batch} after {prompt}-token prompts: {Median(medians[f]):F3} ms/step median of {rounds} round medians " +
                    $"({batch * 1000 / Median(medians[f]):F1} tokens/s; rounds: {string.Join(", ", medians[f].Select(m => m.ToString("F3")))})");
            if (formats.Length == 2)
                Console.WriteLine($"{formats[1].Name()} / {formats[0].Name()} tokens/s: {Median(medians[formats[0]]) / Median(medians[formats[1]]):F3}x");
            return;
        }
        Decode(model, type, batch, steps, warmup, workers, prompt, context, null);
    }

    /// <summary>Decode steps of <paramref name="batch"/> sequences after their prompts: a warm-up time, then timed steps;
    /// prints the figures and returns the median ms per step. format: caches of pool pages in that KV format (null: the
    /// model's own caches, f32).</summary>
    private static double Decode(Transformer model, WeightType type, int batch, int steps, double warmup, int workers, int prompt, int context, KvCacheFormat? format)
    {
        var c = model.Config;
        using var pool = format is { } f
            ? new PagePool((long)batch * PagedKvCache.PagesFor(c, c.HiddenSize, context, f) * c.HiddenSize * sizeof(float), c.HiddenSize)
            : null;
        var state = model.CreateState(Math.Max(batch, prompt), batch);
        var rng = new Random(batch);
        var caches = new IKvCache[batch];
        var next = new int[batch];
        var times = new List<double>();
        var clock = Stopwatch.StartNew();
        var step = new Stopwatch();
        var process = Process.GetCurrentProcess();
        TimeSpan cpu = default;
        // fresh caches whenever the context would run out (the warm-up may take many steps)
        int used = int.MaxValue, room = context - prompt;
        while (times.Count < steps)
        {
            if (used >= room)
            {
                for (int i = 0; i < batch; i++)
                {
                    (caches[i] as PagedKvCache)?.Release();
                    caches[i] = pool is null ? model.CreateCache(context) : PagedKvCache.For(pool, c, i, context, format!.Value);
                    state.Clear();
                    state.Add(caches[i], Enumerable.Range(0, prompt).Select(_ => rng.Next(c.VocabSize)).ToArray());
                    model.Forward(state);
                    next[i] = rng.Next(c.VocabSize);
                }
                used = 0;
            }
            if (times.Count == 0 && clock.Elapsed.TotalSeconds >= warmup)
            {
                process.Refresh();
                cpu = process.TotalProcessorTime;
            }
            step.Restart();
            state.Clear();
            for (int i = 0; i < batch; i++) state.Add(caches[i], next.AsSpan(i, 1));
            model.Forward(state);
            for (int i = 0; i < batch; i++) next[i] = model.Kernels.Argmax(state.Logits(i));
            double ms = step.Elapsed.TotalMilliseconds;
            used++;
            if (clock.Elapsed.TotalSeconds >= warmup) times.Add(ms);
        }
        process.Refresh();
        double cpuMs = (process.TotalProcessorTime - cpu).TotalMilliseconds / steps;
        times.Sort();
        double median = times[times.Count / 2];
        Console.WriteLine($"decode {type} batch {batch}{(model.FuseEpilogues ? "" : " unfused")}{(format is { } kv ? $", KV {kv.Name()} in pool pages" : "")}, prompts of {prompt}, {workers} thread(s): {median:F3} ms/step median, {times[0]:F3} best of {steps} " +
            $"({batch * 1000 / median:F1} tokens/s median), {cpuMs:F3} ms CPU per step, after {warmup:F0} s of warm-up; load {File.ReadAllText("/proc/loadavg").Trim()}");
        foreach (var cache in caches) (cache as PagedKvCache)?.Release();
        return median;
    }

    /// <summary>Prefills of <paramref name="n"/> tokens, each on a fresh cache: a warm-up time, then timed ones.</summary>
    private static void Prefill(Transformer model, WeightType type, int n, int steps, double warmup, int workers)
    {
        var state = model.CreateState(n, 1);
        var tokens = Enumerable.Range(0, n).Select(i => (i * 7919) % model.Config.VocabSize).ToArray();
        var times = new List<double>();
        var cpus = new List<double>();
        var clock = Stopwatch.StartNew();
        var sw = new Stopwatch();
        var process = Process.GetCurrentProcess();
        while (times.Count < steps)
        {
            var cache = model.CreateCache(n);
            state.Clear();
            state.Add(cache, tokens);
            process.Refresh();
            var cpu = process.TotalProcessorTime;
            sw.Restart();
            model.Forward(state);
            double ms = sw.Elapsed.TotalMilliseconds;
            process.Refresh();
            if (clock.Elapsed.TotalSeconds < warmup) continue;
            times.Add(ms);
            cpus.Add((process.TotalProcessorTime - cpu).TotalMilliseconds);
        }
        times.Sort();
        cpus.Sort();
        double median = times[times.Count / 2];
        Console.WriteLine($"prefill {type} {n} tokens{(model.FuseEpilogues ? "" : " unfused")}, {workers} thread(s): {median:F1} ms median, {times[0]:F1} best of {steps} " +
            $"({n * 1000 / median:F0} tokens/s median), {cpus[cpus.Count / 2]:F1} ms CPU median, after {warmup:F0} s of warm-up; load {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    private static string? Value(string[] args, string name) =>
        Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
