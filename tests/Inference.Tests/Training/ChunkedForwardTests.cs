using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Loom.Inference.Training;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>The chunked training forward that rides along with decode steps: chunk by chunk, with every base-weight
/// product computed in the decode step's region, it gives bitwise the activations, loss and LoRA gradients of the whole
/// row's forward pass, and the decode steps give bitwise the logits they give without it.</summary>
public sealed class ChunkedForwardTests(ITestOutputHelper log)
{
    public static readonly TheoryData<string, SimdLevel, bool, int> Cases = new()
    {
        { "mistral_hd64", SimdLevel.Vector512, true, 2 },        // packed f32 panels, heads of 64
        { "llama3_scaled_bf16", SimdLevel.Vector512, true, 2 },  // packed bf16 panels
        { "llama3_scaled_bf16", SimdLevel.Vector512, true, 1 },  // the first layer recomputed in the backward pass
        { "qwen2_bias", SimdLevel.Vector512, false, 2 },         // row-major f32, q/k/v bias
        { "llama_gqa_tied", SimdLevel.Vector256, false, 2 },     // no fused region: the two products one after the other
        { "llama_gqa_tied", SimdLevel.Scalar, false, 1 },        // the scalar twins
    };

    private const int Rows = 45;        // two packed examples; not a multiple of 8
    private const int ChunkRows = 16;

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void ChunksRidingDecodeStepsGiveTheWholeRowsForwardAndLeaveDecodeUnchanged(string name, SimdLevel level, bool pack, int stored)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine");
        Skip.If(level == SimdLevel.Vector256 && Simd.Best == SimdLevel.Scalar, "no AVX2 on this machine");
        string dir = Golden.PathOf(name);
        var config = ModelConfig.Load(dir);
        var kernels = new CpuKernels(level);
        using var model = new Transformer(ModelWeights.Load(dir, config, pack: pack), kernels, maxContext: 64);
        var c = model.Config;
        var rnd = new Random(11);
        var row = new[]
        {
            TrainingExample.AllTrained(Enumerable.Range(0, 20).Select(_ => rnd.Next(c.VocabSize)).ToArray()),
            TrainingExample.AllTrained(Enumerable.Range(0, Rows - 20).Select(_ => rnd.Next(c.VocabSize)).ToArray()),
        };

        // the whole row, layer by layer
        var (whole, wholeP) = NewModel(model, stored);
        whole.SetRow(row);
        whole.Embed();
        for (int l = 0; l < c.NumLayers; l++) whole.ForwardLayer(l);

        // chunk by chunk, each riding along with one decode step of three sequences; the same steps again without it
        var (chunked, chunkedP) = NewModel(model, stored);
        chunked.SetRow(row);
        chunked.Embed();
        chunked.BeginChunks();
        var (withState, withCaches) = Decoding(model);
        var (aloneState, aloneCaches) = Decoding(model);
        long fused0 = kernels.FusedProducts, unfused0 = kernels.UnfusedRiderProducts;
        int rides = 0, step = 0;
        while (chunked.ChunkedRows < Rows)
        {
            var ride = chunked.NextChunk(ChunkRows);
            int token = (step * 37 + 5) % c.VocabSize;
            Step(withState, withCaches, token);
            using (var scope = kernels.Ride(ride))
            {
                model.Forward(withState);
                scope.Complete();
            }
            ride.Complete();
            Assert.Equal(4 * c.NumLayers, ride.Carried);
            Step(aloneState, aloneCaches, token);
            model.Forward(aloneState);
            for (int s = 0; s < 3; s++)
                Assert.True(withState.Logits(s).SequenceEqual(aloneState.Logits(s)), $"step {step}: sequence {s}'s logits changed with training rows beside it");
            rides++;
            step++;
        }
        Assert.Equal((Rows + ChunkRows - 1) / ChunkRows, rides);
        long fused = kernels.FusedProducts - fused0, unfused = kernels.UnfusedRiderProducts - unfused0;
        log.WriteLine($"{name} ({level}, packed {pack}, {stored} layers kept): {rides} chunks, {fused} fused products, {unfused} run one after the other");
        Assert.Equal(rides * 4L * c.NumLayers, fused + unfused);
        if (level == SimdLevel.Vector512) Assert.Equal(0, unfused);
        else Assert.Equal(0, fused);

        // the kept layers' activations (a recomputed layer's are computed again in the backward pass)
        for (int l = c.NumLayers - stored; l < c.NumLayers; l++)
        {
            var a = whole.ActivationsOf(l);
            var b = chunked.ActivationsOf(l);
            Same(a.Xn1, b.Xn1, Rows * c.HiddenSize, l, "xn1");
            Same(a.Q, b.Q, Rows * c.QDim, l, "q");
            Same(a.K, b.K, Rows * c.KvDim, l, "k");
            Same(a.V, b.V, Rows * c.KvDim, l, "v");
            Same(a.Att, b.Att, Rows * c.QDim, l, "attention");
            Same(a.Xmid, b.Xmid, Rows * c.HiddenSize, l, "xmid");
            Same(a.G, b.G, Rows * c.IntermediateSize, l, "gate");
            Same(a.Up, b.Up, Rows * c.IntermediateSize, l, "up");
            Same(a.H, b.H, Rows * c.IntermediateSize, l, "h");
            for (int h = 0; h < c.NumHeads; h++)
                for (int t = 0; t < Rows; t++)
                {
                    int s0 = t < 20 ? 0 : 20;
                    var pa = a.P.AsSpan((h * Rows + t) * Rows + s0, t - s0 + 1);
                    Assert.True(pa.SequenceEqual(b.P.AsSpan((h * Rows + t) * Rows + s0, t - s0 + 1)), $"layer {l}: probabilities of head {h}, row {t}");
                }
            for (int m = 0; m < a.U.Length; m++) Same(a.U[m], b.U[m], a.U[m].Length == 0 ? 0 : Rows * wholeP.Rank, l, $"lora u {m}");
        }
        for (int l = 1; l <= c.NumLayers; l++) Same(whole.LayerInput(l), chunked.LayerInput(l), Rows * c.HiddenSize, l, "residual stream");

        // the loss and the backward pass from there: the same gradients
        double lossWhole = whole.Head(1f / Rows, backward: true), lossChunked = chunked.Head(1f / Rows, backward: true);
        Assert.Equal(lossWhole, lossChunked);
        Assert.True(double.IsFinite(lossWhole) && lossWhole > 0);
        for (int l = c.NumLayers - 1; l >= 0; l--)
        {
            whole.BackwardLayer(l);
            chunked.BackwardLayer(l);
        }
        for (int i = 0; i < wholeP.Modules.Count; i++)
        {
            Assert.True(wholeP.Modules[i].GA.AsSpan().SequenceEqual(chunkedP.Modules[i].GA), $"module {i}: gradient of A");
            Assert.True(wholeP.Modules[i].GBt.AsSpan().SequenceEqual(chunkedP.Modules[i].GBt), $"module {i}: gradient of B");
            Assert.Contains(wholeP.Modules[i].GA, v => v != 0);
        }
        log.WriteLine($"loss {lossWhole:R} both ways");
    }

    /// <summary>A training model keeping the last <paramref name="stored"/> layers' activations, its LoRA B weights random
    /// (so the LoRA products count).</summary>
    private static (TrainingModel Model, LoraParameters P) NewModel(Transformer model, int stored)
    {
        var p = LoraParameters.Initialize(model.Config, 4, 8, LoraTargets.All, 3);
        var r = new Random(4);
        foreach (var m in p.Modules)
            for (int i = 0; i < m.Bt.Length; i++) m.Bt[i] = (float)(r.NextDouble() - 0.5) * 0.2f;
        return (new TrainingModel(model, p, Rows, stored), p);
    }

    /// <summary>Three sequences with their 5-token prompts run.</summary>
    private static (ForwardState State, IKvCache[] Caches) Decoding(Transformer model)
    {
        var state = model.CreateState(16, 3);
        var caches = Enumerable.Range(0, 3).Select(_ => model.CreateCache(64)).ToArray();
        for (int s = 0; s < 3; s++)
            state.Add(caches[s], Enumerable.Range(0, 5).Select(i => (s * 31 + i * 7 + 3) % model.Config.VocabSize).ToArray());
        model.Forward(state);
        return (state, caches);
    }

    private static void Step(ForwardState state, IKvCache[] caches, int token)
    {
        state.Clear();
        for (int s = 0; s < caches.Length; s++) state.Add(caches[s], [(token + s) % 300]);
    }

    private static void Same(float[] a, float[] b, int n, int layer, string what)
    {
        for (int i = 0; i < n; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                Assert.Fail($"layer {layer} {what}[{i}]: {a[i]:R} (whole row) vs {b[i]:R} (chunked)");
    }
}
