using System.Collections.Concurrent;
using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Training;
using Loom.Jobs.FineTuning;

namespace Loom.Benchmarks.FineTuning;

/// <summary>
/// Fine-tuning checkpoints (suite <c>finetuning</c>). <c>checkpoint</c>: on the SmolLM2-135M shape (f32 random base, rank
/// 16 on all seven modules, 256 trained tokens per step, as the training suite), the engine checkpoints by its
/// <see cref="CheckpointSchedule"/> exactly as a fine-tuning job does (the default lag 0: the write overlaps the next
/// step's forward and backward, and that step's update waits for it) and each snapshot is written by
/// Loom's <see cref="CheckpointFiles.Write"/> (temporary folder, fsync, manifest with SHA-256, atomic rename) off the loop:
/// the stall each checkpoint costs the loop (the copy into the run's staging buffers plus any back-pressure wait) against the step time; then the
/// checkpoint write's throughput against a plain copy of the same bytes with fsync, in the same run. <c>e2e</c>: see
/// <see cref="FineTuningEndToEnd"/>. Recovery after kill -9 is measured by tests/Jobs.Tests FineTuneCrashTests (real
/// processes) and printed there.
/// </summary>
internal static class FineTuningBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    /// <summary>The default checkpoint interval (FineTuningOptions.CheckpointEverySteps).</summary>
    private const int DefaultInterval = 50;

    public static void Run(string[] args)
    {
        string part = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "checkpoint";
        switch (part)
        {
            case "checkpoint": Checkpoints(quick: args.Contains("--quick")); break;
            case "e2e": FineTuningEndToEnd.RunAsync().GetAwaiter().GetResult(); break;
            default: throw new ArgumentException($"unknown part '{part}': checkpoint | e2e");
        }
    }

    private static double Median(IEnumerable<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count == 0 ? double.NaN : s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    private static void Checkpoints(bool quick)
    {
        int rounds = quick ? 1 : 3, every = 3, steps = quick ? 7 : 10;
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine();
        Console.WriteLine("== fine-tuning checkpoints: SmolLM2-135M shape, f32 base (random weights), rank 16 on all seven modules, 256 trained tokens per step ==");
        Console.WriteLine($"   {steps} steps per round, a checkpoint every {every} steps with the default lag 0 (the next update waits for the write), each written by CheckpointFiles.Write off the loop");
        using var engine = new ServingEngine(new Transformer(ModelWeights.CreateRandom(Smol, WeightType.F32, seed: 1), maxContext: 512), null,
            new InferenceOptions { MaxContext = 512, PoolBytes = 64L << 20 }, "smol");
        Console.WriteLine($"kernels at {Simd.Best}");
        var rows = new List<(double Step, double Stall, double Write, double WriteMBs, double CopyMBs, long Bytes)>();
        for (int round = 1; round <= rounds; round++)
        {
            Console.WriteLine($"-- round {round} of {rounds}");
            var (step, stall, write, last) = Stall(engine, steps, every, round);
            var (writeMBs, copyMBs, bytes) = Write(last);
            rows.Add((step, stall, write, writeMBs, copyMBs, bytes));
        }
        double stepS = Median(rows.Select(r => r.Step)), stallS = Median(rows.Select(r => r.Stall));
        Console.WriteLine();
        Console.WriteLine($"median of {rounds} round(s): step {stepS * 1000:F0} ms; stall {stallS * 1000:F1} ms per checkpoint = {stallS / stepS:P2} of a step " +
                          $"(target at most 5%); at the default interval ({DefaultInterval} steps) {stallS / (stepS * DefaultInterval):P3} of training time");
        Console.WriteLine($"median of {rounds} round(s): a checkpoint's write takes {Median(rows.Select(r => r.Write)) * 1000:F0} ms = {Median(rows.Select(r => r.Write)) / stepS:F2} steps " +
                          $"(the write overlaps the next step's forward and backward; the default interval is {DefaultInterval})");
        double w = Median(rows.Select(r => r.WriteMBs)), c = Median(rows.Select(r => r.CopyMBs));
        Console.WriteLine($"median of {rounds} round(s): checkpoint write {w:F0} MB/s, plain copy with fsync {c:F0} MB/s ({w / c:P0} of the copy; {rows[0].Bytes / 1e6:F1} MB per checkpoint)");
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    /// <summary>Trains <paramref name="steps"/> steps checkpointing every <paramref name="every"/>; returns the median step
    /// time (after the first step), the median stall per checkpoint, the median write time and the last checkpoint.</summary>
    private static (double Step, double Stall, double Write, TrainingSnapshot Last) Stall(ServingEngine engine, int steps, int every, int round)
    {
        var rng = new Random(round);
        var rows = Enumerable.Range(0, steps).Select(_ => TrainingExample.AllTrained(Enumerable.Range(0, 257).Select(_ => rng.Next(Smol.VocabSize)).ToArray())).ToArray();
        string root = Directory.CreateTempSubdirectory("loom-bench-ft-").FullName;
        var checkpoints = new ConcurrentQueue<(TrainingSnapshot Snapshot, double WriteSeconds)>();
        Task Persist(TrainingSnapshot s) => Task.Run(() =>
        {
            var sw = Stopwatch.StartNew();
            CheckpointFiles.Write(s, root, "smol");
            checkpoints.Enqueue((s, sw.Elapsed.TotalSeconds));
        });
        try
        {
            var run = engine.SubmitTraining(new TrainingRequest
            {
                Examples = rows, OutputFolder = Path.Combine(root, "final"),
                Hyperparameters = new TrainingHyperparameters
                {
                    Epochs = 1, MicroBatchSize = 1, GradientAccumulation = 1, LearningRate = 1e-4, Schedule = LearningRateSchedule.Constant, Rank = 16,
                    Alpha = 32, TargetModules = LoraTargets.All, Seed = 1, Shuffle = false, MaxGradNorm = 1,
                },
                Checkpoints = new CheckpointSchedule(every, 0, Persist),
            });
            var stepTimes = new List<double>();
            var watch = Stopwatch.StartNew();
            int seen = 0;
            foreach (var p in run.ReadProgressAsync().ToBlockingEnumerable())
            {
                if (p.Step <= seen) continue;
                double s = watch.Elapsed.TotalSeconds;
                watch.Restart();
                if (seen > 0) stepTimes.Add(s); // the first step warms up
                seen = p.Step;
                Console.Write($"\r  step {p.Step}/{p.TotalSteps}, {s * 1000:F0} ms, ETA {p.EstimatedRemaining?.TotalSeconds ?? 0:F0} s   ");
            }
            Console.WriteLine();
            var result = run.Completion.GetAwaiter().GetResult();
            var list = checkpoints.OrderBy(c => c.Snapshot.Step).ToList();
            foreach (var (snap, write) in list)
                Console.WriteLine($"  checkpoint at step {snap.Step}: stall {snap.Stall.TotalMilliseconds:F1} ms (copy, and any wait since the checkpoint before), written in {write * 1000:F0} ms ({snap.TensorBytes / 1e6:F1} MB of tensors)");
            // every copy and every wait, the last checkpoint's included, over the checkpoints taken
            double step = Median(stepTimes), stall = result.CheckpointStall.TotalSeconds / list.Count, writeS = Median(list.Select(c => c.WriteSeconds));
            Console.WriteLine($"  median step {step * 1000:F0} ms over {stepTimes.Count} steps; stall {result.CheckpointStall.TotalMilliseconds:F1} ms over {list.Count} checkpoints = {stall * 1000:F1} ms per checkpoint ({stall / step:P2} of a step)");
            return (step, stall, writeS, list[^1].Snapshot);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>CheckpointFiles.Write of the snapshot against copying the same files (with fsync) in the same run.</summary>
    private static (double WriteMBs, double CopyMBs, long Bytes) Write(TrainingSnapshot snapshot)
    {
        string root = Directory.CreateTempSubdirectory("loom-bench-ckpt-").FullName;
        try
        {
            var sw = Stopwatch.StartNew();
            string folder = CheckpointFiles.Write(snapshot, root, "smol");
            double write = sw.Elapsed.TotalSeconds;
            var files = Directory.GetFiles(folder);
            long bytes = files.Sum(f => new FileInfo(f).Length);
            string copyTo = Directory.CreateDirectory(Path.Combine(root, "copy")).FullName;
            sw.Restart();
            foreach (var f in files)
            {
                using var from = File.OpenRead(f);
                using var to = new FileStream(Path.Combine(copyTo, Path.GetFileName(f)), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                from.CopyTo(to, 1 << 20);
                to.Flush(flushToDisk: true);
            }
            double copy = sw.Elapsed.TotalSeconds;
            Console.WriteLine($"  checkpoint of {bytes / 1e6:F1} MB ({files.Length} files): written in {write * 1000:F0} ms ({bytes / 1e6 / write:F0} MB/s, serialisation, SHA-256 and fsync included); " +
                              $"plain copy with fsync {copy * 1000:F0} ms ({bytes / 1e6 / copy:F0} MB/s)");
            return (bytes / 1e6 / write, bytes / 1e6 / copy, bytes);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
