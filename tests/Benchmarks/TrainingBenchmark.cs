using System.Diagnostics;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Training;

namespace Loom.Benchmarks;

/// <summary>LoRA fine-tuning in the engine: trained tokens/s on the SmolLM2-135M shape (rank 16 on all seven modules,
/// rows of 256 trained tokens, AdamW) against PyTorch eager CPU timed in the same run; co-serving (inference latency
/// with and without a training run beside it, training throughput against solo, a PNG over time); and the quality task
/// on models/loom-demo.</summary>
internal static partial class TrainingBenchmark
{
    private static readonly ModelConfig Smol = Shapes.SmolLM2;

    public static void Run(string[] args)
    {
        string part = args.FirstOrDefault(a => !a.StartsWith("--")) ?? "all";
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        if (part is "profile") TrainingProfile.Run(Smol);
        if (part is "kernels") TrainingKernelProfile.Run();
        if (part is "all" or "speed") Speed(args);
        if (part is "all" or "coserve") CoServe(args);
        if (part is "ride") Ride(args);
        if (part is "all" or "quality") Quality(args);
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    /// <summary>(examples) of 257 random tokens, every token after the first trained: 256 trained tokens per row, as the
    /// PyTorch anchor trains 256 targets from 256 inputs.</summary>
    private static TrainingExample[] RandomRows(int count, int vocab, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => TrainingExample.AllTrained(Enumerable.Range(0, 257).Select(_ => r.Next(vocab)).ToArray())).ToArray();
    }

    private static TrainingHyperparameters SmolHp(int steps) => new()
    {
        Epochs = 1, MicroBatchSize = 1, GradientAccumulation = 1, LearningRate = 1e-4, Schedule = LearningRateSchedule.Constant, Rank = 16,
        Alpha = 32, TargetModules = LoraTargets.All, Seed = 1, Shuffle = false, MaxGradNorm = 1,
    };

    private static void Speed(string[] args)
    {
        int steps = args.Contains("--quick") ? 3 : 6;
        Console.WriteLine();
        Console.WriteLine($"== training speed: SmolLM2-135M shape, f32 base (random weights), rank 16 on all seven modules, 256 trained tokens per step, AdamW ==");
        var sw = Stopwatch.StartNew();
        using var engine = new ServingEngine(new Transformer(ModelWeights.CreateRandom(Smol, WeightType.F32, seed: 1), maxContext: 512), null,
            new InferenceOptions { MaxContext = 512, PoolBytes = 64L << 20 }, "smol");
        Console.WriteLine($"model built in {sw.Elapsed.TotalSeconds:F1} s; kernels at {Simd.Best}");
        var rows = RandomRows(steps + 1, Smol.VocabSize, 3);
        var run = engine.SubmitTraining(new TrainingRequest
        {
            Examples = rows, Hyperparameters = SmolHp(steps + 1), OutputFolder = Path.Combine(Path.GetTempPath(), "loom-bench-train"),
        });
        var stepTimes = new List<double>();
        var cpuTimes = new List<double>();
        var last = Stopwatch.StartNew();
        var self = Process.GetCurrentProcess();
        var lastCpu = self.TotalProcessorTime;
        foreach (var p in run.ReadProgressAsync().ToBlockingEnumerable())
        {
            if (p.State != TrainingRunState.Running || p.Step == 0) continue;
            double s = last.Elapsed.TotalSeconds;
            last.Restart();
            self.Refresh();
            double cpu = (self.TotalProcessorTime - lastCpu).TotalSeconds;
            lastCpu = self.TotalProcessorTime;
            Console.WriteLine($"  step {p.Step}: {s * 1000:F0} ms, {cpu:F2} CPU-s, loss {p.TrainLoss:F4}");
            if (p.Step > 1) { stepTimes.Add(s); cpuTimes.Add(cpu); }   // the first step warms up (JIT, page faults)
        }
        run.Completion.GetAwaiter().GetResult();
        stepTimes.Sort();
        cpuTimes.Sort();
        double median = stepTimes[stepTimes.Count / 2];
        double loomTps = 256 / median;
        Console.WriteLine($"Loom: median step {median * 1000:F0} ms over {stepTimes.Count} steps = {loomTps:F1} trained tokens/s " +
            $"(median {cpuTimes[cpuTimes.Count / 2]:F2} CPU-seconds per step on {Environment.ProcessorCount} cores)");
        double? torchTps = TorchAnchor();
        if (torchTps is { } t) Console.WriteLine($"ratio Loom / PyTorch: {loomTps / t:F2}x");
    }

    /// <summary>Runs /work/shared/anchors/torch_lora_train.py (or LOOM_TORCH_ANCHOR) with OPENBLAS_CORETYPE and
    /// OPENBLAS_L2_SIZE unset for that command only; returns its tokens/s, or null when it cannot run here.</summary>
    private static double? TorchAnchor()
    {
        string script = Environment.GetEnvironmentVariable("LOOM_TORCH_ANCHOR") ?? "/work/shared/anchors/torch_lora_train.py";
        if (!File.Exists(script) || !File.Exists("/usr/bin/python3"))
        {
            Console.WriteLine($"PyTorch anchor: {script} or /usr/bin/python3 not found, not timed");
            return null;
        }
        var psi = new ProcessStartInfo("/usr/bin/python3", script) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment.Remove("OPENBLAS_CORETYPE");
        psi.Environment.Remove("OPENBLAS_L2_SIZE");
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Console.WriteLine($"PyTorch anchor (same run, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset): {output.Trim()}");
        // from the step time (the script rounds tokens/s to an integer)
        var m = System.Text.RegularExpressions.Regex.Match(output, @"(\d+) ms per step of (\d+) tokens");
        if (!m.Success) return null;
        double tps = double.Parse(m.Groups[2].Value) / (double.Parse(m.Groups[1].Value) / 1000);
        Console.WriteLine($"PyTorch: {tps:F2} trained tokens/s");
        return tps;
    }
}
