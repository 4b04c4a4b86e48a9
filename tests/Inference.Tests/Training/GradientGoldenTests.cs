using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>Loss and the gradient of every LoRA tensor against float64 PyTorch autograd (tests/reference/training_oracle.py):
/// GQA, tied and untied heads, qkv bias, llama3 rope scaling, bf16 weights, all seven modules and subsets.</summary>
public sealed class GradientGoldenTests(ITestOutputHelper log)
{
    internal static (double Loss, LoraParameters P) Gradients(TrainingGolden g, SimdLevel level, int storedLayers, bool? pack = null)
    {
        using var model = g.LoadModel(level, pack);
        var p = LoraParameters.FromAdapter(model.Config, g.LoadAdapter(model.Config));
        var tm = new TrainingModel(model, p, 32, storedLayers);
        var batch = g.Examples.Take(g.PerStep).ToArray();
        int total = batch.Sum(e => e.TrainedTokens);
        double loss = 0;
        foreach (var e in batch)
        {
            tm.SetRow([e]);
            tm.Embed();
            for (int l = 0; l < model.Config.NumLayers; l++) tm.ForwardLayer(l);
            loss += tm.Head(1f / total, backward: true);
            for (int l = model.Config.NumLayers - 1; l >= 0; l--) tm.BackwardLayer(l);
        }
        return (loss / total, p);
    }

    internal static float[] PeftB(LoraModule m)
    {
        var b = new float[m.Bt.Length];
        LoraModule.Transpose(m.GBt, b, m.Rank, m.Out);
        return b;
    }

    [SkippableTheory]
    [MemberData(nameof(TrainingGolden.GradientCases), MemberType = typeof(TrainingGolden))]
    public void LossAndEveryLoraGradientMatchAutograd(string name)
    {
        Skip.If(Simd.Best == SimdLevel.Scalar, "no vector kernels on this machine");
        var g = TrainingGolden.Load(name);
        var (loss, p) = Gradients(g, Simd.Best, storedLayers: int.MaxValue);
        double lossRel = Math.Abs(loss - g.Losses[0]) / Math.Abs(g.Losses[0]);
        log.WriteLine($"{name}: loss {loss:R} vs {g.Losses[0]:R} (rel {lossRel:E2})");
        Assert.True(lossRel < 1e-5, $"loss {loss} vs golden {g.Losses[0]}");
        double worst = 0;
        string worstName = "";
        foreach (var m in p.Modules)
        {
            foreach (bool isA in new[] { true, false })
            {
                string tensor = LoraTargets.TensorName(m.Layer, m.Target, isA);
                var expected = g.Tensor("grad." + tensor);
                var actual = isA ? m.GA : PeftB(m);
                var (rel, _, _) = Compare.RelativeError(actual, expected);
                if (rel > worst) { worst = rel; worstName = tensor; }
                Compare.Close(null, $"{name} grad {tensor}", actual, expected, 1e-4);
            }
        }
        log.WriteLine($"{name}: {p.Modules.Count * 2} gradient tensors, worst relative error {worst:E2} ({worstName})");
    }

    [SkippableTheory]
    [MemberData(nameof(TrainingGolden.GradientCases), MemberType = typeof(TrainingGolden))]
    public void RecomputingLayersGivesBitwiseTheSameGradients(string name)
    {
        Skip.If(Simd.Best == SimdLevel.Scalar, "no vector kernels on this machine");
        var g = TrainingGolden.Load(name);
        var (l1, stored) = Gradients(g, Simd.Best, storedLayers: int.MaxValue);
        var (l2, recomputed) = Gradients(g, Simd.Best, storedLayers: 1);
        Assert.Equal(l1, l2);
        for (int i = 0; i < stored.Modules.Count; i++)
        {
            Assert.Equal(stored.Modules[i].GA, recomputed.Modules[i].GA);
            Assert.Equal(stored.Modules[i].GBt, recomputed.Modules[i].GBt);
        }
    }

    [Theory]
    [MemberData(nameof(TrainingGolden.GradientCases), MemberType = typeof(TrainingGolden))]
    public void ScalarTwinsAgreeWithAutograd(string name)
    {
        var g = TrainingGolden.Load(name);
        var (loss, p) = Gradients(g, SimdLevel.Scalar, storedLayers: int.MaxValue, pack: false);
        Assert.True(Math.Abs(loss - g.Losses[0]) / Math.Abs(g.Losses[0]) < 1e-5);
        double worst = 0;
        foreach (var m in p.Modules)
        {
            var (ra, _, _) = Compare.RelativeError(m.GA, g.Tensor("grad." + LoraTargets.TensorName(m.Layer, m.Target, true)));
            var (rb, _, _) = Compare.RelativeError(PeftB(m), g.Tensor("grad." + LoraTargets.TensorName(m.Layer, m.Target, false)));
            worst = Math.Max(worst, Math.Max(ra, rb));
        }
        log.WriteLine($"{name} (scalar twins, unpacked weights): worst relative error {worst:E2}");
        Assert.True(worst <= 1e-4, $"worst relative error {worst:E2}");
    }
}
