using System.Collections.Concurrent;
using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Training;

namespace Loom.Benchmarks;

internal static partial class TrainingBenchmark
{
    /// <summary>Co-serving on the SmolLM2-135M shape (bf16): the decode capacity with 8 streams, then an open-loop load at
    /// half of it (Poisson arrivals, 16-token prompts, 32 output tokens) for a fixed time without and with a training
    /// run beside it, and the training run alone for the same time. Reports inter-token time percentiles, training
    /// tokens/s against solo, and a PNG over time.</summary>
    private static void CoServe(string[] args)
    {
        bool quick = args.Contains("--quick");
        double seconds = quick ? 40 : 90;
        Console.WriteLine();
        Console.WriteLine($"== co-serving: SmolLM2-135M shape, bf16 base (random weights); training rank 16 on all seven modules, rows of 256 trained tokens ==");
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.BF16, seed: 1), maxContext: 512);
        double share = args.SkipWhile(a => a != "--share").Skip(1).Select(double.Parse).DefaultIfEmpty(0.2).First();
        Console.WriteLine($"Inference:TrainingShareWhileServing = {share}");
        using var engine = new ServingEngine(model, null, new InferenceOptions
        {
            MaxContext = 512, PoolBytes = 256L << 20, TokenBudget = 256, MaxRunningSequences = 16, PrefillChunk = 64, TrainingShareWhileServing = share,
        }, "smol");
        var r = new Random(9);
        int[] Prompt() => Enumerable.Range(0, 16).Select(_ => r.Next(Smol.VocabSize)).ToArray();
        GenerationRequest Req() => new() { PromptTokenIds = Prompt(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 32, IgnoreEos = true }, TenantId = "users" };

        // capacity: 8 concurrent streams, closed loop
        Closed(engine, Req, 8, 5); // warm-up
        double capacity = Closed(engine, Req, 8, quick ? 10 : 20);
        double rate = capacity / 2 / 32; // requests/s at half the token capacity
        Console.WriteLine($"decode capacity with 8 streams: {capacity:F1} tokens/s; offered load: {rate:F2} requests/s × 32 tokens = {rate * 32:F1} tokens/s (half)");

        var alone = Open(engine, Req, rate, seconds, train: null);
        var hp = SmolHp(0);
        var rows = RandomRows(400, Smol.VocabSize, 4);
        TrainingRequest TrainReq() => new() { Examples = rows, Hyperparameters = hp, TenantId = "trainer", OutputFolder = Path.Combine(Path.GetTempPath(), "loom-bench-coserve") };
        var both = Open(engine, Req, rate, seconds, train: TrainReq);
        var solo = Open(engine, Req, 0, seconds, train: TrainReq);

        static string P(List<double> v, double q) => v.Count == 0 ? "-" : $"{v.Order().ElementAt((int)Math.Min(v.Count - 1, q * v.Count)) * 1000:F0}";
        Console.WriteLine($"inference alone:          {alone.Tokens / seconds:F1} tokens/s; inter-token p50 {P(alone.Itl, 0.5)} ms, p90 {P(alone.Itl, 0.9)} ms, p99 {P(alone.Itl, 0.99)} ms");
        Console.WriteLine($"inference with training:  {both.Tokens / seconds:F1} tokens/s; inter-token p50 {P(both.Itl, 0.5)} ms, p90 {P(both.Itl, 0.9)} ms, p99 {P(both.Itl, 0.99)} ms");
        double p50a = alone.Itl.Order().ElementAt(alone.Itl.Count / 2), p50b = both.Itl.Order().ElementAt(both.Itl.Count / 2);
        Console.WriteLine($"p50 inter-token time with / without training: {p50b / p50a:F2}x (target ≤ 1.2x)");
        Console.WriteLine($"training beside inference: {both.Trained / seconds:F1} trained tokens/s; solo: {solo.Trained / seconds:F1}; ratio {(double)both.Trained / Math.Max(1, solo.Trained):P0} (target ≥ 50%)");
        string png = args.SkipWhile(a => a != "--png").Skip(1).FirstOrDefault() ?? "tests/Benchmarks/training-coserve.png";
        var chart = new PngChart(900, 400);
        double yMax = Math.Max(alone.Series.Max(p => p.Y), Math.Max(both.Series.Max(p => p.Y), solo.TrainSeries.Max(p => p.Y))) * 1.1;
        chart.Grid(seconds, yMax, 10, yMax / 5);
        chart.Draw(alone.Series, (120, 120, 120), seconds, yMax);
        chart.Draw(both.Series, (0, 90, 200), seconds, yMax);
        chart.Draw(both.TrainSeries, (220, 80, 0), seconds, yMax);
        chart.Draw(solo.TrainSeries, (250, 180, 120), seconds, yMax);
        chart.Save(png);
        Console.WriteLine($"chart: {png} (x: seconds; y: tokens/s per 5 s window; grey: inference alone, blue: inference with training, " +
            "orange: training beside inference, light orange: training solo)");
    }

    private sealed record Window(long Tokens, long Trained, List<double> Itl, List<(double X, double Y)> Series, List<(double X, double Y)> TrainSeries);

    /// <summary>Tokens/s of <paramref name="streams"/> back-to-back request loops for <paramref name="seconds"/>.</summary>
    private static double Closed(ServingEngine engine, Func<GenerationRequest> req, int streams, double seconds)
    {
        long tokens = 0;
        var sw = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, streams).Select(_ => Task.Run(async () =>
        {
            while (sw.Elapsed.TotalSeconds < seconds)
                await foreach (var e in engine.GenerateAsync(req()))
                    if (e.TokenId is not null) Interlocked.Increment(ref tokens);
        })).ToArray();
        Task.WaitAll(tasks);
        return tokens / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Poisson arrivals at <paramref name="rate"/> requests/s (0: none) for <paramref name="seconds"/>, with a training
    /// run beside them when given; inter-token times of every stream and 5-second windows of token rates.</summary>
    private static Window Open(ServingEngine engine, Func<GenerationRequest> req, double rate, double seconds, Func<TrainingRequest>? train)
    {
        var itl = new ConcurrentBag<double>();
        var stamps = new ConcurrentBag<double>();
        var sw = Stopwatch.StartNew();
        ITrainingRun? run = train is null ? null : engine.SubmitTraining(train());
        var trainStamps = new List<(double T, long Tokens)>();
        var tracker = run is null ? Task.CompletedTask : Task.Run(async () =>
        {
            await foreach (var p in run.ReadProgressAsync())
                lock (trainStamps) trainStamps.Add((sw.Elapsed.TotalSeconds, p.TrainedTokens));
        });
        var arrivals = new Random(21);
        var tasks = new List<Task>();
        double next = rate > 0 ? -Math.Log(1 - arrivals.NextDouble()) / rate : double.MaxValue;
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            if (sw.Elapsed.TotalSeconds >= next)
            {
                var request = req();
                tasks.Add(Task.Run(async () =>
                {
                    double last = -1;
                    await foreach (var e in engine.GenerateAsync(request))
                    {
                        if (e.TokenId is null) continue;
                        double now = sw.Elapsed.TotalSeconds;
                        if (now <= seconds) stamps.Add(now);
                        if (last >= 0 && now <= seconds) itl.Add(now - last);
                        last = now;
                    }
                }));
                next += -Math.Log(1 - arrivals.NextDouble()) / rate;
            }
            Thread.Sleep(1);
        }
        long trained = 0;
        if (run is not null)
        {
            lock (trainStamps) trained = trainStamps.Count == 0 ? 0 : trainStamps[^1].Tokens;
            run.Cancel();
            try { run.Completion.GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
            tracker.Wait();
        }
        Task.WaitAll(tasks.ToArray());
        var series = new List<(double, double)>();
        var trainSeries = new List<(double, double)>();
        for (double t = 0; t < seconds; t += 5)
        {
            series.Add((t + 2.5, stamps.Count(s => s >= t && s < t + 5) / 5.0));
            long at(double x) { lock (trainStamps) return trainStamps.Where(s => s.T <= x).Select(s => s.Tokens).DefaultIfEmpty(0).Max(); }
            trainSeries.Add((t + 2.5, (at(t + 5) - at(t)) / 5.0));
        }
        return new Window(stamps.Count, trained, itl.ToList(), series, trainSeries);
    }
}
