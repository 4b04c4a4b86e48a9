using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>LoRA on an int8 base: the adapter stays f32 in pool pages and its delta is added to the q8 projection's
/// output, so the delta is the one computed on the f32 path.</summary>
public sealed class Q8LoraTests(ITestOutputHelper log)
{
    private static LayerWeights LayerOf(ModelWeights w, int layer) => w.Layers[layer];

    private static WeightMatrix Weight(LayerWeights l, LoraTarget t) => t switch
    {
        LoraTarget.QProj => l.Q.Weight, LoraTarget.KProj => l.K.Weight, LoraTarget.VProj => l.V.Weight, LoraTarget.OProj => l.O.Weight,
        LoraTarget.GateProj => l.Gate.Weight, LoraTarget.UpProj => l.Up.Weight, _ => l.Down.Weight,
    };

    /// <summary>At every module the oracle recorded, as the forward pass does it (projection, then the adapter's delta
    /// added in place): (q8 projection + LoRA) − q8 projection equals the oracle's delta and the f32 path's to 1e-4.</summary>
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void DeltaOnAQ8BaseIsTheF32Delta(string name)
    {
        var g = LoraGolden.Load(name);
        using var f32 = GoldenLogitsTests.Open(g.Model, WeightFormat.F32);
        using var q8 = GoldenLogitsTests.Open(g.Model, WeightFormat.Q8);
        var c = f32.Config;
        var adapter = PeftAdapter.Load(g.Directory, c);
        using var pool = new PagePool(4096L * c.HiddenSize * 4, c.HiddenSize);
        var r = AdapterResidency.TryCreate(pool, name, 1, adapter)!;
        foreach (var (layer, target) in g.Deltas)
        {
            var (x, expected) = g.Delta(layer, target);
            var (inDim, outDim) = LoraTargets.Dims(c, target);
            int n = x.Length / inDim;
            float[] DeltaOn(Transformer m)
            {
                var w = Weight(LayerOf(m.Weights, layer), target);
                var y = new float[n * outDim];
                m.Kernels.MatMul(y, x, w, n);
                var baseOnly = (float[])y.Clone();
                var scratch = new float[n * adapter.Config.Rank];
                LoraKernel.Apply(y, x, inDim, outDim, [new LoraSegment(0, n, r)], layer, target, scratch, m.Kernels.Level);
                for (int i = 0; i < y.Length; i++) y[i] -= baseOnly[i];
                return y;
            }
            Assert.Equal(WeightType.Q8, Weight(LayerOf(q8.Weights, layer), target).Type);
            var onQ8 = DeltaOn(q8);
            Compare.Close(log, $"{name} {LoraTargets.Name(target)}@{layer}: delta on q8 vs oracle", onQ8, expected, 1e-4);
            Compare.Close(log, "delta on q8 vs delta on f32", onQ8, DeltaOn(f32), 1e-4);
        }
    }

    /// <summary>The whole forward pass with the adapter on a q8 base: within the q8 error of the oracle's with-adapter
    /// logits (the int8 base alone is 1-5.6% off on these random two-layer models), and much closer to them than the
    /// q8 base without the adapter is (the adapter is applied).</summary>
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void AdapterOnAQ8BaseIsWithinTheQuantizationErrorOfTheOracle(string name)
    {
        var g = LoraGolden.Load(name);
        using var model = GoldenLogitsTests.Open(g.Model, WeightFormat.Q8);
        var prompts = Golden.Load(g.Model).Prompts;
        foreach (var (i, withAdapter, expected) in g.PrefillsWithAdapter(model))
        {
            Compare.Close(log, $"{name} q8 base + adapter, prefill {i}", withAdapter, expected, 8e-2);
            var (error, _, _) = Compare.RelativeError(withAdapter, expected);
            var (moved, _, _) = Compare.RelativeError(GoldenLogitsTests.PrefillAll(model, prompts[i]), expected);
            log.WriteLine($"without the adapter the q8 logits are {moved:E2} of their range from the oracle's with it");
            Assert.True(error < moved / 2, $"the adapter brings the q8 logits only from {moved:E2} to {error:E2} of the oracle's");
        }
    }
}
