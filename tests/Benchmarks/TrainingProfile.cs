using System.Diagnostics;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Training;

namespace Loom.Benchmarks;

/// <summary>Where a training step's time goes on the SmolLM2-135M shape: forward layers, loss head, backward layers,
/// optimizer, beside an inference prefill of the same tokens.</summary>
internal static class TrainingProfile
{
    public static void Run(ModelConfig c)
    {
        using var model = new Transformer(ModelWeights.CreateRandom(c, WeightType.F32, seed: 1), maxContext: 512);
        var p = LoraParameters.Initialize(c, 16, 32, LoraTargets.All, 1);
        var tm = new TrainingModel(model, p, 257, c.NumLayers);
        var r = new Random(3);
        var ex = TrainingExample.AllTrained(Enumerable.Range(0, 257).Select(_ => r.Next(c.VocabSize)).ToArray());
        var state = model.CreateState(257, 1);
        for (int rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            tm.SetRow([ex]);
            tm.Embed();
            for (int l = 0; l < c.NumLayers; l++) tm.ForwardLayer(l);
            double fwd = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            tm.Head(1f / 256, backward: true);
            double head = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            for (int l = c.NumLayers - 1; l >= 0; l--) tm.BackwardLayer(l);
            double bwd = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            AdamW.Step(p, new TrainingHyperparameters(), 1, 1e-4);
            p.ZeroGradients();
            double opt = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            var kv = model.CreateCache(300);
            state.Clear();
            state.Add(kv, ex.TokenIds);
            model.Forward(state);
            double prefill = sw.Elapsed.TotalMilliseconds;
            Console.WriteLine($"  profile: forward {fwd:F0} ms, head {head:F0} ms, backward {bwd:F0} ms, AdamW {opt:F0} ms; inference prefill of the same 257 tokens {prefill:F0} ms");
        }
    }
}

internal static class TrainingKernelProfile
{
    public static void Run()
    {
        var k = new CpuKernels();
        foreach (var (rows, cols) in new[] { (1536, 576), (576, 1536), (576, 576) })
        {
            var r = new Random(1);
            var vals = Enumerable.Range(0, rows * cols).Select(_ => (float)r.NextDouble()).ToArray();
            using var w0 = WeightMatrix.FromFloats(vals, rows, cols, WeightType.F32);
            using var w = w0.Pack();
            int n = 257;
            var xf = new float[n * cols]; var yf = new float[n * rows];
            var xb = new float[n * rows]; var yb = new float[n * cols];
            // the best of 8 rounds of 5 calls each (JIT tiers up during the first rounds; the machine is shared)
            double f = double.MaxValue, b = double.MaxValue;
            for (int rep = 0; rep < 8; rep++)
            {
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < 5; i++) k.MatMul(yf, xf, w, n);
                f = Math.Min(f, sw.Elapsed.TotalMilliseconds / 5);
                sw.Restart();
                for (int i = 0; i < 5; i++) MatMulTransposedKernel.Forward(yb, xb, w, n, k.Level);
                b = Math.Min(b, sw.Elapsed.TotalMilliseconds / 5);
            }
            double flops = 2.0 * n * rows * cols;
            Console.WriteLine($"  W[{rows},{cols}] n={n}: x·Wᵀ {f:F2} ms ({flops / f / 1e6:F1} GFLOP/s), x·W {b:F2} ms ({flops / b / 1e6:F1} GFLOP/s)");
        }
    }
}
