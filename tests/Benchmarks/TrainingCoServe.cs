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
    /// half of it (Poisson arrivals, 16-token prompts, 32 output tokens) without and with a training run beside it, and
    /// the training run alone. The three phases alternate in rounds (alone, with training, training solo; 3 rounds of 30 s,
    /// or 2 of 20 s with --quick) so that a change in the machine's load falls on all three; one training run serves every
    /// round (paused outside its phases, so its set-up is not timed). Reports inter-token time percentiles, training
    /// progress beside inference against solo (in units of work, not rounded to optimizer steps), where the loop's time
    /// went, and a PNG over time.</summary>
    private static void CoServe(string[] args)
    {
        bool quick = args.Contains("--quick");
        int rounds = quick ? 2 : 3;
        double seconds = quick ? 20 : 30;
        Console.WriteLine();
        Console.WriteLine($"== co-serving: SmolLM2-135M shape, bf16 base (random weights); training rank 16 on all seven modules, rows of 256 trained tokens ==");
        var model = new Transformer(ModelWeights.CreateRandom(Smol, WeightType.BF16, seed: 1), maxContext: 512);
        var defaults = new InferenceOptions();
        double share = args.SkipWhile(a => a != "--share").Skip(1).Select(double.Parse).DefaultIfEmpty(defaults.TrainingShareWhileServing).First();
        double burst = args.SkipWhile(a => a != "--burst").Skip(1).Select(double.Parse).DefaultIfEmpty(defaults.TrainingBurstMs).First();
        int rideRows = args.SkipWhile(a => a != "--ride-rows").Skip(1).Select(int.Parse).DefaultIfEmpty(defaults.TrainingRideRows).First();
        int rideEvery = args.SkipWhile(a => a != "--ride-every").Skip(1).Select(int.Parse).DefaultIfEmpty(defaults.TrainingRideEvery).First();
        Console.WriteLine($"Inference:TrainingShareWhileServing = {share}, Inference:TrainingBurstMs = {burst}, Inference:TrainingRideRows = {rideRows}, " +
            $"Inference:TrainingRideEvery = {rideEvery}; {rounds} rounds of {seconds:F0} s per phase");
        using var engine = new ServingEngine(model, null, new InferenceOptions
        {
            MaxContext = 512, PoolBytes = 256L << 20, TokenBudget = 256, MaxRunningSequences = 16, PrefillChunk = 64, TrainingShareWhileServing = share, TrainingBurstMs = burst,
            TrainingRideRows = rideRows, TrainingRideEvery = rideEvery,
        }, "smol");
        var r = new Random(9);
        int[] Prompt() => Enumerable.Range(0, 16).Select(_ => r.Next(Smol.VocabSize)).ToArray();
        GenerationRequest Req() => new() { PromptTokenIds = Prompt(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 32, IgnoreEos = true }, TenantId = "users" };

        // capacity: 8 concurrent streams, closed loop
        Closed(engine, Req, 8, 5); // warm-up
        double capacity = Closed(engine, Req, 8, quick ? 10 : 20);
        double rate = capacity / 2 / 32; // requests/s at half the token capacity
        Console.WriteLine($"decode capacity with 8 streams: {capacity:F1} tokens/s; offered load: {rate:F2} requests/s × 32 tokens = {rate * 32:F1} tokens/s (half)");

        // one run for every round: its first step (allocation, first touch of its buffers) before the clock starts
        var run = engine.SubmitTraining(new TrainingRequest
        {
            Examples = RandomRows(2000, Smol.VocabSize, 4), Hyperparameters = SmolHp(0), TenantId = "trainer",
            OutputFolder = Path.Combine(Path.GetTempPath(), "loom-bench-coserve"),
        });
        while (run.Latest.Step < 1) Thread.Sleep(10);
        Pause(run);

        var alone = new List<Window>();
        var both = new List<Window>();
        var solo = new List<Window>();
        for (int round = 0; round < rounds; round++)
        {
            alone.Add(Open(engine, Req, rate, seconds, null));
            run.Resume();
            both.Add(Open(engine, Req, rate, seconds, run));
            Pause(run);
            run.Resume();
            solo.Add(Open(engine, Req, 0, seconds, run));
            Pause(run);
        }
        double workPerToken = engine.TrainingWork / Math.Max(1, run.Latest.TrainedTokens);
        run.Cancel();
        try { run.Completion.GetAwaiter().GetResult(); } catch (OperationCanceledException) { }

        double total = rounds * seconds;
        var itlAlone = alone.SelectMany(w => w.Itl).Order().ToList();
        var itlBoth = both.SelectMany(w => w.Itl).Order().ToList();
        static string P(List<double> v, double q) => v.Count == 0 ? "-" : $"{v[(int)Math.Min(v.Count - 1, q * v.Count)] * 1000:F0}";
        Console.WriteLine($"inference alone:          {alone.Sum(w => w.Tokens) / total:F1} tokens/s; inter-token p50 {P(itlAlone, 0.5)} ms, p90 {P(itlAlone, 0.9)} ms, p99 {P(itlAlone, 0.99)} ms");
        Console.WriteLine($"inference with training:  {both.Sum(w => w.Tokens) / total:F1} tokens/s; inter-token p50 {P(itlBoth, 0.5)} ms, p90 {P(itlBoth, 0.9)} ms, p99 {P(itlBoth, 0.99)} ms");
        Console.WriteLine($"p50 inter-token time with / without training: {itlBoth[itlBoth.Count / 2] / itlAlone[itlAlone.Count / 2]:F2}x (target ≤ 1.2x)");
        double workBoth = both.Sum(w => w.Work), workSolo = solo.Sum(w => w.Work);
        Console.WriteLine($"training beside inference: {workBoth / workPerToken / total:F1} trained tokens/s; solo: {workSolo / workPerToken / total:F1} " +
            $"(work done in layer-tokens, {workPerToken:F0} per trained token); ratio {workBoth / Math.Max(1, workSolo):P0} (target ≥ 50%)");
        Console.WriteLine($"  by round: {string.Join(", ", both.Zip(solo, (b, s) => $"{b.Work / Math.Max(1, s.Work):P0}"))}");

        string png = args.SkipWhile(a => a != "--png").Skip(1).FirstOrDefault() ?? "tests/Benchmarks/training-coserve.png";
        static List<(double X, double Y)> Joined(List<Window> ws, Func<Window, List<(double X, double Y)>> series, double seconds, double scale) =>
            ws.SelectMany((w, i) => series(w).Select(p => (p.X + i * seconds, p.Y * scale))).ToList();
        var grey = Joined(alone, w => w.Series, seconds, 1);
        var blue = Joined(both, w => w.Series, seconds, 1);
        var orange = Joined(both, w => w.TrainSeries, seconds, 1 / workPerToken);
        var light = Joined(solo, w => w.TrainSeries, seconds, 1 / workPerToken);
        LinePlot.Save(png, $"Co-serving: inference at {rate * 32:F0} tokens/s offered (half its capacity) with and without a training run; training beside it and solo",
            "time (s; the rounds of each phase one after another)", "tokens/s per 5 s window",
            [
                new("inference alone (generated tokens/s)", ScottPlot.Colors.Gray, grey),
                new("inference with training (generated tokens/s)", ScottPlot.Colors.Blue, blue),
                new("training beside inference (trained tokens/s)", ScottPlot.Colors.OrangeRed, orange),
                new("training solo (trained tokens/s)", ScottPlot.Colors.Orange, light),
            ]);
        Console.WriteLine($"chart: {png}");
    }

    /// <summary>Pauses the run and waits until it is (between two units).</summary>
    private static void Pause(ITrainingRun run)
    {
        run.Pause();
        while (run.State != TrainingRunState.Paused) Thread.Sleep(1);
    }

    private sealed record Window(long Tokens, double Work, List<double> Itl, List<(double X, double Y)> Series, List<(double X, double Y)> TrainSeries);

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

    /// <summary>Poisson arrivals at <paramref name="rate"/> requests/s (0: none) for <paramref name="seconds"/>, with the
    /// (resumed) training run beside them when given: inter-token times of every stream, 5-second windows of token rates
    /// and of training work, the training work done in the window, and where the loop's time went.</summary>
    private static Window Open(ServingEngine engine, Func<GenerationRequest> req, double rate, double seconds, ITrainingRun? run)
    {
        var itl = new ConcurrentBag<double>();
        var stamps = new ConcurrentBag<double>();
        var times0 = engine.LoopTimes;
        long iterations0 = engine.GetMetrics().Loop.Iterations, slices0 = engine.TrainingCounters.Slices;
        var rides0 = engine.RideCounters;
        var work = new List<double> { engine.TrainingWork };  // at 0, 5, 10, ... s
        var sw = Stopwatch.StartNew();
        var arrivals = new Random(21);
        var tasks = new List<Task>();
        double next = rate > 0 ? -Math.Log(1 - arrivals.NextDouble()) / rate : double.MaxValue;
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            if (sw.Elapsed.TotalSeconds >= 5 * work.Count) work.Add(engine.TrainingWork);
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
        work.Add(engine.TrainingWork);
        var times1 = engine.LoopTimes;
        long iterations = engine.GetMetrics().Loop.Iterations - iterations0, slices = engine.TrainingCounters.Slices - slices0;
        double wall = sw.Elapsed.TotalSeconds, stepS = (times1.Steps - times0.Steps).TotalSeconds, trainS = (times1.Training - times0.Training).TotalSeconds;
        double idleS = (times1.Idle - times0.Idle).TotalSeconds;
        Console.WriteLine($"  {(run is null ? "alone" : rate > 0 ? "both " : "solo ")} {wall:F0} s: inference steps {stepS:F1} s ({iterations} steps, " +
            $"{1000 * stepS / Math.Max(1, iterations):F1} ms each), training {trainS:F1} s ({slices} slices, {1000 * trainS / Math.Max(1, slices):F1} ms each), " +
            $"idle {idleS:F1} s, other {wall - stepS - trainS - idleS:F1} s; load {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        var rides1 = engine.RideCounters;
        if (rides1.Rides > rides0.Rides)
            Console.WriteLine($"        {rides1.Rides - rides0.Rides} chunks of the forward pass rode along with decode steps ({rides1.Rows - rides0.Rows} rows; " +
                $"{(rides1.Landing - rides0.Landing).TotalSeconds:F1} s completing them after their steps)");
        // requests still running finish outside the window (their tokens after it are not counted)
        Task.WaitAll(tasks.ToArray());
        var series = new List<(double, double)>();
        var trainSeries = new List<(double, double)>();
        for (int i = 0; i * 5 < seconds; i++)
        {
            double t = 5 * i;
            series.Add((t + 2.5, stamps.Count(s => s >= t && s < t + 5) / 5.0));
            if (run is not null && i + 1 < work.Count) trainSeries.Add((t + 2.5, (work[i + 1] - work[i]) / Math.Min(5, seconds - t)));
        }
        return new Window(stamps.Count, run is null ? 0 : work[^1] - work[0], itl.ToList(), series, trainSeries);
    }
}
