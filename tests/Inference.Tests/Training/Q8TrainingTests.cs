using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Fine-tuning on an int8 base (Inference:WeightFormat=Q8): the forward pass runs the q8 kernels, the backward
/// reads the dequantized weights; the steps land near autograd's on the f32 base.</summary>
public sealed class Q8TrainingTests(ITestOutputHelper log) : IDisposable
{
    private readonly TrainingHarness _h = new();
    public void Dispose() => _h.Dispose();

    [Fact]
    public async Task AdamWStepsOnAQ8BaseStayNearAutogradOnF32()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        var engine = _h.Engine(g.Model, format: WeightFormat.Q8);
        var result = await TrainingHarness.Finish(engine.SubmitTraining(new TrainingRequest
        {
            Examples = g.Examples.Take(g.Steps * g.PerStep).ToArray(),
            Hyperparameters = TrainingHarness.Hyperparameters(g),
            InitialAdapterFolder = g.Directory,
            OutputFolder = _h.Folder(),
        }));
        Assert.Equal(g.Steps, result.Steps);
        double lossRel = Math.Abs(result.FinalTrainLoss - g.Losses[^1]) / g.Losses[^1];
        log.WriteLine($"q8 base: last step loss {result.FinalTrainLoss:R} vs autograd on f32 {g.Losses[^1]:R} (rel {lossRel:E2})");
        Assert.True(lossRel < 1e-2, $"loss {result.FinalTrainLoss} vs {g.Losses[^1]}");
        var adapter = PeftAdapter.Load(result.AdapterFolder, engine.Model.Config);
        var start = PeftAdapter.Load(g.Directory, engine.Model.Config);
        foreach (var m in adapter.Modules)
        {
            // AdamW's first steps move every weight by about the learning rate whatever the gradient's size, so the
            // weights are compared by the direction of their update: cosine of (q8 run − start) and (autograd − start)
            string tensor = LoraTargets.TensorName(m.Layer, m.Target, isA: false);
            var expected = g.Tensor($"step{g.Steps}.{tensor}");
            var before = start.Find(m.Layer, m.Target)!.B;
            double dot = 0, a2 = 0, b2 = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                double a = m.B[i] - before[i], b = expected[i] - before[i];
                dot += a * b; a2 += a * a; b2 += b * b;
            }
            double cosine = dot / Math.Sqrt(a2 * b2);
            log.WriteLine($"{tensor}: cosine of the update with autograd's {cosine:F4}");
            Assert.True(cosine > 0.9, $"{tensor}: the update's cosine with autograd's is {cosine:F4}");
        }
    }
}
