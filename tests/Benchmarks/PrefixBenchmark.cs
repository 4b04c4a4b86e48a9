using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;

namespace Loom.Benchmarks;

/// <summary>Suite <c>prefix</c>: time to first token with a shared system prompt (512 tokens) with automatic prefix
/// caching on pool pages (<c>Inference:PrefixCaching</c>, the default) and without it, side by side in each round.
/// Workloads: a burst of requests of one tenant with the system prompt and distinct user suffixes; the same requests one
/// at a time after a first one; multi-turn conversations (each turn's prompt is the conversation so far).
/// SmolLM2-135M shape, random bf16 weights, greedy decoding. Median of the rounds.</summary>
internal static class PrefixBenchmark
{
    private const int SystemTokens = 512, SuffixTokens = 32, Generated = 8;

    private static readonly (string Name, bool Caching)[] Settings = [("no reuse", false), ("prefix caching", true)];

    public static void Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        int rounds = args.SkipWhile(a => a != "--rounds").Skip(1).Select(int.Parse).FirstOrDefault(quick ? 1 : 3);
        int burst = quick ? 8 : 16, sequential = quick ? 4 : 8;
        Console.WriteLine($"prefix: SmolLM2-135M shape, random bf16 weights, {Environment.ProcessorCount} cores; system prompt {SystemTokens} tokens, " +
            $"user suffix {SuffixTokens}, {Generated} generated (greedy); {rounds} round(s), medians of the rounds' figures");
        var rng = new Random(7);
        int[] system = Enumerable.Range(0, SystemTokens).Select(_ => rng.Next(Shapes.SmolLM2.VocabSize)).ToArray();
        int[][] suffixes = Enumerable.Range(0, burst + sequential + 1).Select(_ => Enumerable.Range(0, SuffixTokens).Select(_ => rng.Next(Shapes.SmolLM2.VocabSize)).ToArray()).ToArray();

        var results = new Dictionary<string, List<double[]>>();
        for (int round = 0; round < rounds; round++)
            foreach (var (name, caching) in Settings)
            {
                using var e = Engine(caching);
                var b = Burst(e, system, suffixes[..burst]);
                double[] s = OneAtATime(e, system, suffixes[burst..]);
                var m = e.GetMetrics();
                var row = new[] { Percentile(b.Ttft, 50), Percentile(b.Ttft, 99), b.Seconds, Percentile(s, 50), m.Loop.TokensComputed, m.Prefix.TokensReused };
                (results.TryGetValue(name, out var list) ? list : results[name] = []).Add(row);
                Console.WriteLine($"  round {round + 1} {name,-16} burst TTFT p50 {row[0] * 1e3:F0} ms p99 {row[1] * 1e3:F0} ms, all done in {row[2]:F2} s; " +
                    $"one at a time TTFT p50 {row[3] * 1e3:F0} ms; tokens computed {row[4]:F0}, prompt tokens reused {row[5]:F0}");
            }

        Console.WriteLine();
        Console.WriteLine($"| setting | burst of {burst}: TTFT p50 | p99 | all done | one at a time ({sequential}): TTFT p50 | tokens computed | prompt tokens reused |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var (name, _) in Settings)
        {
            var med = Enumerable.Range(0, 6).Select(i => Median(results[name].Select(r => r[i]))).ToArray();
            Console.WriteLine($"| {name} | {med[0] * 1e3:F0} ms | {med[1] * 1e3:F0} ms | {med[2]:F2} s | {med[3] * 1e3:F0} ms | {med[4]:F0} | {med[5]:F0} |");
        }
        var off = results["no reuse"];
        var on = results["prefix caching"];
        Console.WriteLine($"prefix caching vs no reuse (median of per-round ratios): burst TTFT p50 {Median(off.Zip(on, (a, b) => a[0] / b[0])):F2}x faster, " +
            $"one at a time {Median(off.Zip(on, (a, b) => a[3] / b[3])):F2}x faster");

        Console.WriteLine();
        int conversations = quick ? 4 : 8, turns = 4;
        Console.WriteLine($"multi-turn: {conversations} conversations at once, {turns} turns, first prompt {SystemTokens} tokens (shared by all), +24 new tokens per turn, 16 generated per turn");
        foreach (var (name, caching) in Settings)
        {
            var later = new List<double>();
            for (int round = 0; round < rounds; round++)
            {
                using var e = Engine(caching);
                later.Add(Percentile(MultiTurn(e, system, conversations, turns), 50));
            }
            Console.WriteLine($"  {name,-16} TTFT of turns 2-{turns}: p50 {Median(later) * 1e3:F0} ms (median of {rounds} round(s))");
        }
    }

    private static ServingEngine Engine(bool caching)
    {
        var model = new Transformer(ModelWeights.CreateRandom(Shapes.SmolLM2, WeightType.BF16, seed: 1), maxContext: 1024);
        return new ServingEngine(model, null, new InferenceOptions
        {
            MaxContext = 1024, PrefillChunk = 256, TokenBudget = 512, MaxRunningSequences = 64, PoolBytes = 768L << 20,
            PrefixCaching = caching,
        }, "smol");
    }

    private static GenerationRequest Request(int[] prompt, int maxTokens = Generated) => new()
    {
        PromptTokenIds = prompt, TenantId = "t",
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true },
    };

    /// <summary>Streams a request; its time to first token.</summary>
    private static async Task<double> Ttft(ServingEngine e, GenerationRequest r, List<int>? output = null)
    {
        var clock = Stopwatch.StartNew();
        double ttft = -1;
        await foreach (var ev in e.GenerateAsync(r))
        {
            if (ev.TokenId is not int id) continue;
            if (ttft < 0) ttft = clock.Elapsed.TotalSeconds;
            output?.Add(id);
        }
        return ttft;
    }

    private static (double[] Ttft, double Seconds) Burst(ServingEngine e, int[] system, int[][] suffixes)
    {
        var clock = Stopwatch.StartNew();
        var ttft = Task.WhenAll(suffixes.Select(s => Ttft(e, Request([.. system, .. s])))).GetAwaiter().GetResult();
        return (ttft, clock.Elapsed.TotalSeconds);
    }

    /// <summary>A first request, then the others one after another: each finds the system prompt's KV of the ones before.</summary>
    private static double[] OneAtATime(ServingEngine e, int[] system, int[][] suffixes)
    {
        Ttft(e, Request([.. system, .. suffixes[0]])).GetAwaiter().GetResult();
        return suffixes[1..].Select(s => Ttft(e, Request([.. system, .. s])).GetAwaiter().GetResult()).ToArray();
    }

    /// <summary>Conversations side by side, each turn sent when the previous answer is complete; TTFT of turns after the first.</summary>
    private static double[] MultiTurn(ServingEngine e, int[] system, int conversations, int turns)
    {
        var later = new List<double>();
        var tasks = Enumerable.Range(0, conversations).Select(c => Task.Run(async () =>
        {
            var rng = new Random(100 + c);
            var history = system.ToList();
            for (int t = 0; t < turns; t++)
            {
                var answer = new List<int>();
                double ttft = await Ttft(e, Request(history.ToArray(), 16), answer);
                if (t > 0) lock (later) later.Add(ttft);
                history.AddRange(answer);
                history.AddRange(Enumerable.Range(0, 24).Select(_ => rng.Next(Shapes.SmolLM2.VocabSize)));
            }
        })).ToArray();
        Task.WaitAll(tasks);
        return later.ToArray();
    }

    private static double Percentile(IReadOnlyList<double> xs, double p)
    {
        var s = xs.Order().ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p / 100 * s.Length) - 1, 0, s.Length - 1)];
    }

    private static double Median(IEnumerable<double> xs) => Percentile(xs.ToArray(), 50);
}
