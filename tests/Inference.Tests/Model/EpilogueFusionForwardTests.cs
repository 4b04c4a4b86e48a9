using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Model;

/// <summary>The forward pass with its fused epilogues (residual adds in o_proj and down_proj, SiLU·mul in gate/up) against
/// the same model with separate passes, on random models: a batch of chunked prefills and decode steps, with no adapter,
/// with adapters on o_proj and down_proj (their deltas go straight into the residual stream; the MLP stays fused), and
/// with adapters on every module (gate/up deltas before the activation: the MLP takes the separate passes).</summary>
public sealed class EpilogueFusionForwardTests(ITestOutputHelper log) : IDisposable
{
    private readonly List<TempAdapter> _temps = [];

    public void Dispose() { foreach (var t in _temps) t.Dispose(); }

    public static TheoryData<WeightType, SimdLevel, string, int> Cases()
    {
        var d = new TheoryData<WeightType, SimdLevel, string, int>();
        foreach (var type in new[] { WeightType.F32, WeightType.BF16, WeightType.Q8 })
            foreach (var level in new[] { SimdLevel.Scalar, SimdLevel.Vector256, SimdLevel.Vector512 })
                foreach (var adapters in new[] { "none", "o-down", "all" })
                    foreach (int intermediate in new[] { 352, 208 })   // packed (a multiple of 32) and row-major
                        d.Add(type, level, adapters, intermediate);
        return d;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void FusedForwardEqualsSeparatePasses(WeightType type, SimdLevel level, string adapters, int intermediate)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        var c = new ModelConfig
        {
            ModelType = "llama", HiddenSize = 128, IntermediateSize = intermediate, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
            HeadDim = 32, VocabSize = 512, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 10000, MaxPositionEmbeddings = 256,
        };
        using var model = new Transformer(ModelWeights.CreateRandom(c, type, seed: 3), new CpuKernels(level, 2), maxContext: 64);
        using var pool = new PagePool(4096L * c.HiddenSize * 4, c.HiddenSize);
        LoraTarget[][] targets = adapters switch
        {
            "none" => [],
            "o-down" => [[LoraTarget.OProj, LoraTarget.DownProj], [LoraTarget.QProj, LoraTarget.DownProj]],
            _ => [[.. LoraTargets.All], [LoraTarget.OProj, LoraTarget.GateProj], [LoraTarget.UpProj, LoraTarget.VProj]],
        };
        var resident = targets.Select((t, i) =>
        {
            var temp = TempAdapter.Random(c, 4 + 4 * i, t, seed: 20 + i, alpha: 2.0 * (4 + 4 * i));
            _temps.Add(temp);
            return AdapterResidency.TryCreate(pool, $"a{i}", i + 1, PeftAdapter.Load(temp.Path, c))!;
        }).ToArray();

        var fused = Run(model, resident, fuse: true);
        var separate = Run(model, resident, fuse: false);
        int differ = 0;
        for (int i = 0; i < fused.Length; i++) if (BitConverter.SingleToInt32Bits(fused[i]) != BitConverter.SingleToInt32Bits(separate[i])) differ++;
        log.WriteLine($"{type} {level} adapters {adapters} intermediate {intermediate}: {differ} of {fused.Length} logits differ bitwise");
        // With adapters the deltas are added to the residual stream in another order (x + W·h + Δ instead of x + (W·h + Δ)):
        // a rounding apart. Q8 quantizes every projection's input to int8 per block of 32, where a rounding apart can flip
        // a value by one step (1/127 of the block's largest): that alone moves logits by up to a few 1e-4.
        double tolerance = adapters != "none" && type == WeightType.Q8 ? 2e-3 : 1e-5;
        Compare.Close(log, "fused vs separate passes", fused, separate, tolerance);
        if (adapters == "none") Assert.Equal(0, differ);   // without adapters every fused step is the same arithmetic
        if (adapters != "none")
        {
            // the adapters matter: the base model's logits are far from these
            var plain = Run(model, [], fuse: true);
            Assert.True(Compare.RelativeError(plain, fused).Rel > 1e-3, "the adapters do not change the logits");
        }
    }

    /// <summary>Five sequences (adapters in turn, one on the base model): prompts in two chunks, then decode steps with
    /// fixed tokens; every position's logits of every step, concatenated.</summary>
    private static float[] Run(Transformer model, AdapterResidency[] adapters, bool fuse)
    {
        model.FuseEpilogues = fuse;
        var c = model.Config;
        var rng = new Random(7);
        int[] lengths = [11, 3, 17, 1, 9];
        int n = lengths.Length;
        var prompts = lengths.Select(len => Enumerable.Range(0, len).Select(_ => rng.Next(c.VocabSize)).ToArray()).ToArray();
        var caches = prompts.Select(_ => model.CreateCache(64)).ToArray();
        AdapterResidency? AdapterOf(int i) => adapters.Length == 0 || i == n - 1 ? null : adapters[i % adapters.Length];
        var s = model.CreateState(64, n, allPositionLogits: true, maxLoraRank: 16);
        var logits = new List<float>();
        void Step(Func<int, int[]> tokens)
        {
            s.Clear();
            for (int i = 0; i < n; i++) s.Add(caches[i], tokens(i), AdapterOf(i));
            model.Forward(s, LogitsMode.AllPositions);
            for (int t = 0; t < s.TokenCount; t++) logits.AddRange(s.Logits(t).ToArray());
        }
        Step(i => prompts[i][..((prompts[i].Length + 1) / 2)]);
        Step(i => prompts[i].Length > 1 ? prompts[i][((prompts[i].Length + 1) / 2)..] : [prompts[i][0]]);
        for (int step = 0; step < 3; step++) Step(_ => [rng.Next(c.VocabSize)]);
        model.FuseEpilogues = true;
        return [.. logits];
    }
}
