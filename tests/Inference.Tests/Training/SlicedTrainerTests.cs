using Loom.Inference.Formats;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>The trainer's units: rows long enough for the loss head to take several blocks give bitwise the same
/// parameters and losses whether the trainer runs one unit per slice or whole steps at once.</summary>
public sealed class SlicedTrainerTests(ITestOutputHelper log)
{
    [Fact]
    public void OneUnitPerSliceGivesTheSameParametersAsWholeSteps()
    {
        var g = TrainingGolden.Load("llama_gqa_tied_adamw");
        using var model = g.LoadModel();
        var c = model.Config;
        var r = new Random(5);
        // rows of 255 trained positions: the loss head takes two blocks
        var rows = Enumerable.Range(0, 3).Select(_ => TrainingExample.AllTrained(Enumerable.Range(0, 256).Select(_ => r.Next(c.VocabSize)).ToArray())).ToArray();
        var hp = new TrainingHyperparameters
        {
            Epochs = 1, MicroBatchSize = 1, GradientAccumulation = 1, LearningRate = 0.01, Rank = 4, Alpha = 8, TargetModules = LoraTargets.All,
            Seed = 3, Shuffle = false, MaxSequenceLength = 256,
        };
        (LoraParameters P, List<double> Losses, int Slices) Train(double budget)
        {
            var p = LoraParameters.Initialize(c, hp.Rank, hp.Alpha, hp.TargetModules, hp.Seed);
            var trainer = new LoraTrainer(model, p, new TrainingPlan(rows, hp, 256), hp, null, storedLayers: 1, rowTokens: 256);
            var losses = new List<double>();
            int slices = 0;
            while (!trainer.Finished)
            {
                double b = budget;
                slices++;
                if (trainer.Run(ref b)) losses.Add(trainer.LastLoss);
            }
            return (p, losses, slices);
        }
        var whole = Train(double.MaxValue);
        var sliced = Train(1e-9);
        log.WriteLine($"{whole.Slices} slices vs {sliced.Slices}; losses {string.Join(", ", whole.Losses.Select(l => l.ToString("F4")))}");
        Assert.True(sliced.Slices >= whole.Slices * 6, "the small budget did not slice the steps");   // every layer, head block and optimizer step is a unit
        Assert.Equal(whole.Losses, sliced.Losses);
        Assert.All(whole.Losses, l => Assert.True(double.IsFinite(l) && l > 0));
        for (int i = 0; i < whole.P.Modules.Count; i++)
        {
            Assert.True(whole.P.Modules[i].A.AsSpan().SequenceEqual(sliced.P.Modules[i].A), $"module {i} A");
            Assert.True(whole.P.Modules[i].Bt.AsSpan().SequenceEqual(sliced.P.Modules[i].Bt), $"module {i} B");
        }
    }
}
