using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;

namespace Loom.Benchmarks;

/// <summary>Managed bytes allocated per decode step in steady state (after warm-up), on every thread of the process
/// (GC.GetTotalAllocatedBytes, precise): the forward pass at batch 1 and 8 on the SmolLM2-135M shape, and the sampler
/// (temperature with top-p, and greedy) on its 49,152-token vocabulary. Allocation is deterministic up to the thread
/// pool's own bookkeeping, so this is not a timing figure.</summary>
internal static class AllocationBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    public static void Run(bool quick)
    {
        Console.WriteLine($"machine: {Machine.Describe()}");
        using var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.BF16, seed: 1), maxContext: 512);
        int steps = quick ? 8 : 32;
        foreach (int b in new[] { 1, 8 })
        {
            var state = model.CreateState(Math.Max(b, 16), b);
            var caches = Enumerable.Range(0, b).Select(_ => model.CreateCache(16 + steps + 16)).ToArray();
            // the whole run's KV up front: the managed cache adds a block every 16 tokens, which the engine's paged caches
            // (pool pages) never do, and that growth is not the forward pass's
            foreach (var c in caches) c.Reserve(16 + steps + 16);
            var rng = new Random(b);
            var prompt = new int[16];
            foreach (var cache in caches)
            {
                for (int i = 0; i < prompt.Length; i++) prompt[i] = rng.Next(Smol.VocabSize);
                state.Clear();
                state.Add(cache, prompt);
                model.Forward(state);
            }
            var samplers = Enumerable.Range(0, b).Select(i => new Sampler(new SamplingParams { Temperature = 0.8f, TopP = 0.9f, Seed = (ulong)i }, Smol.VocabSize)).ToArray();
            var next = new int[b];
            for (int i = 0; i < b; i++) next[i] = rng.Next(Smol.VocabSize);
            long forward = 0, sampling = 0;
            for (int s = -4; s < steps; s++)
            {
                long a0 = GC.GetTotalAllocatedBytes(precise: true);
                state.Clear();
                for (int i = 0; i < b; i++) state.Add(caches[i], next.AsSpan(i, 1));
                model.Forward(state);
                long a1 = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < b; i++)
                {
                    next[i] = samplers[i].Sample(state.Logits(i));
                    samplers[i].Accept(next[i]);
                }
                long a2 = GC.GetTotalAllocatedBytes(precise: true);
                if (s < 0) continue; // warm-up: the JIT, first-use buffers
                forward += a1 - a0;
                sampling += a2 - a1;
            }
            Console.WriteLine($"decode batch {b}: forward {forward / (double)steps / 1024,8:F1} KB per step, sampling (T 0.8, top-p 0.9) {sampling / (double)steps / 1024,6:F1} KB per step " +
                $"(mean of {steps} steps after 4 warm-up steps)");
        }
        var greedy = new Sampler(new SamplingParams { Temperature = 0 }, Smol.VocabSize);
        var logits = new float[Smol.VocabSize];
        new Random(3).NextBytes(new byte[1]);
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)Math.Sin(i * 0.37) * 8;
        greedy.Sample(logits);
        long g0 = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 100; i++) greedy.Sample(logits);
        Console.WriteLine($"greedy sampling: {(GC.GetTotalAllocatedBytes(precise: true) - g0) / 100.0:F1} bytes per token");
        long p0 = GC.GetTotalAllocatedBytes(precise: true);
        _ = new Sampler(new SamplingParams { Temperature = 0.8f, TopP = 0.9f }, Smol.VocabSize);
        Console.WriteLine($"a new request's sampler: {(GC.GetTotalAllocatedBytes(precise: true) - p0) / 1024.0:F1} KB");
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
    }
}
