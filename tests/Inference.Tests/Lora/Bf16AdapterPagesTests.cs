using Loom.Inference.Adapters;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>Adapters in bfloat16 pool pages (Inference:AdapterPageFormat = bf16): rows packed (about half the pages), the
/// kernels bitwise what they give over f32 pages holding the same (bf16) values, the torch oracle met for an adapter
/// saved in bf16, and an adapter saved in f32 rounded to nearest even.</summary>
public sealed class Bf16AdapterPagesTests(ITestOutputHelper log)
{
    private static readonly LoraTarget[] AllTargets = [.. LoraTargets.All];

    public static TheoryData<SimdLevel> Levels() => [SimdLevel.Vector512, SimdLevel.Vector256, SimdLevel.Scalar];

    /// <summary>llama_gqa_tied (hidden 64, so pages of 64 floats = 128 bf16 elements; KV width 32; intermediate 160),
    /// rank 8 on all seven modules. Per layer in bf16: q and o 4 + 4 pages (two rows of 64 to a page), k and v 4 + 2
    /// (Bᵀ rows of 32, four to a page), gate and up 4 + 12 (Bᵀ rows of 160 cut 64 + 64 + 32 as in f32, two pieces to a
    /// page), down 12 + 4: 76; in f32 160.</summary>
    [Fact]
    public void RowsArePackedSoAnAdapterTakesAboutHalfThePages()
    {
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var t = TempAdapter.Random(config, 8, AllTargets, seed: 3);
        var adapter = PeftAdapter.Load(t.Path, config);
        int f32 = AdapterImage.PagesFor(adapter, 64), bf16 = AdapterImage.PagesFor(adapter, 64, AdapterPageFormat.Bf16);
        Assert.Equal(2 * 160, f32);
        Assert.Equal(2 * 76, bf16);
        Assert.Equal(bf16, AdapterImage.PagesFor(adapter.Config, config, 64, AdapterPageFormat.Bf16));   // registration counts the same
        var image = AdapterImage.Build(adapter, 64, AdapterPageFormat.Bf16);
        Assert.Equal(bf16, image.PageCount);
        Assert.Equal(bf16 * 64L * sizeof(float), image.Bytes);
        using var pool = new PagePool(1000L * 64 * 4, 64);
        var r = AdapterResidency.TryCreate(pool, "a", 1, image)!;
        Assert.Equal(bf16, pool.Usage.AdapterPages);
        Assert.Equal(AdapterPageFormat.Bf16, r.Format);
        // every element reads back as the file's value rounded to nearest even
        foreach (var m in adapter.Modules)
        {
            var a = r.A(m.Layer, m.Target);
            var bt = r.BT(m.Layer, m.Target);
            for (int i = 0; i < m.Rank; i++)
            {
                for (int k = 0; k < m.In; k++) Assert.Equal(Round(m.A[i * m.In + k]), a[i, k]);
                for (int o = 0; o < m.Out; o++) Assert.Equal(Round(m.B[o * m.Rank + i]), bt[i, o]);
            }
        }
    }

    /// <summary>Mixed ranks (2, 8, 16) in one batch at every module, both batch paths (segments side by side, one long
    /// segment cut across workers), saved with bf16 values: the deltas from bf16 pages equal those from f32 pages bit for
    /// bit, and base-only rows stay untouched.</summary>
    [SkippableTheory]
    [MemberData(nameof(Levels))]
    public void DeltasFromBf16PagesEqualTheF32PagesDeltasBitwise(SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        TempAdapter[] temps =
        [
            TempAdapter.Random(config, 2, [LoraTarget.QProj, LoraTarget.DownProj, LoraTarget.VProj], seed: 1, bf16Values: true),
            TempAdapter.Random(config, 8, AllTargets, seed: 2, rsLora: true, bf16Values: true),
            TempAdapter.Random(config, 16, AllTargets, seed: 3, bf16Values: true),
        ];
        try
        {
            var adapters = temps.Select(t => PeftAdapter.Load(t.Path, config)).ToArray();
            using var pool32 = new PagePool(4000L * 64 * 4, 64);
            using var pool16 = new PagePool(4000L * 64 * 4, 64);
            var f32 = adapters.Select((a, i) => AdapterResidency.TryCreate(pool32, $"a{i}", i + 1, a)!).ToArray();
            var bf16 = adapters.Select((a, i) => AdapterResidency.TryCreate(pool16, $"a{i}", i + 1, a, AdapterPageFormat.Bf16)!).ToArray();
            LoraSegment[] Segments(AdapterResidency[] r) =>
                [new(0, 3, r[1]), new(3, 2, null), new(5, 90, r[2]), new(95, 1, r[0]), new(96, 7, r[1]), new(103, 30, r[0])];
            int n = 133, checkedValues = 0;
            var rng = new Random(9);
            foreach (var target in AllTargets)
                for (int layer = 0; layer < config.NumLayers; layer++)
                {
                    var (inDim, outDim) = LoraTargets.Dims(config, target);
                    var x = TempAdapter.RandomArray(rng, n * inDim);
                    var y0 = TempAdapter.RandomArray(rng, n * outDim);
                    foreach (bool alone in new[] { false, true })
                    {
                        // alone: the long rank-16 segment by itself (one segment cut across workers)
                        LoraSegment[] s32 = alone ? [new(0, n, f32[2])] : Segments(f32), s16 = alone ? [new(0, n, bf16[2])] : Segments(bf16);
                        var want = y0.ToArray();
                        var got = y0.ToArray();
                        LoraKernel.Apply(want, x, inDim, outDim, s32, layer, target, new float[n * 16], level);
                        LoraKernel.Apply(got, x, inDim, outDim, s16, layer, target, new float[n * 16], level);
                        Assert.Equal(want, got);
                        var naive = y0.ToArray();
                        NaiveLora.Apply(naive, x, inDim, outDim, s16, layer, target);
                        Compare.Close(log, $"{LoraTargets.Name(target)}@{layer} {level} naive", naive, got, 1e-5);
                        if (!alone)
                            foreach (int t in new[] { 3, 4 })
                                Assert.Equal(y0.AsSpan(t * outDim, outDim).ToArray(), got.AsSpan(t * outDim, outDim).ToArray());
                        checkedValues += got.Length;
                    }
                }
            Assert.True(checkedValues > 100_000, $"{checkedValues} values compared");
            Assert.NotEqual(0, bf16[2].A(0, LoraTarget.DownProj)[15, 130]);   // a second chunk holds data
        }
        finally
        {
            foreach (var t in temps) t.Dispose();
        }
    }

    /// <summary>The golden adapter saved in bf16 (llama3_scaled_bf16_r4), from bf16 pages: torch's deltas to 1e-5.</summary>
    [SkippableTheory]
    [MemberData(nameof(Levels))]
    public void AnAdapterSavedInBf16MeetsTheOracleFromBf16Pages(SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        var g = LoraGolden.Load("llama3_scaled_bf16_r4");
        var adapter = PeftAdapter.Load(g.Directory, g.BaseConfig);
        using var pool = new PagePool(4096L * 64 * 4, g.BaseConfig.HiddenSize);
        var r = AdapterResidency.TryCreate(pool, "g", 1, adapter, AdapterPageFormat.Bf16)!;
        Assert.Equal(AdapterResidency.PagesFor(adapter, pool.PageFloats, AdapterPageFormat.Bf16), pool.Usage.AdapterPages);
        Assert.True(pool.Usage.AdapterPages < 0.6 * AdapterResidency.PagesFor(adapter, pool.PageFloats));
        foreach (var (layer, target) in g.Deltas)
        {
            var (x, expected) = g.Delta(layer, target);
            var (inDim, outDim) = LoraTargets.Dims(g.BaseConfig, target);
            int n = x.Length / inDim;
            var y = new float[n * outDim];
            LoraKernel.Apply(y, x, inDim, outDim, [new LoraSegment(0, n, r)], layer, target, new float[n * adapter.Config.Rank], level);
            Compare.Close(log, $"bf16 pages {LoraTargets.Name(target)}@{layer} {level}", y, expected, 1e-5);
        }
    }

    /// <summary>An adapter saved in f32 is rounded to nearest even as it is laid out: its deltas from bf16 pages equal the
    /// deltas, from f32 pages, of the same adapter with every weight so rounded.</summary>
    [Fact]
    public void AnAdapterSavedInF32IsRoundedToNearestEven()
    {
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var t = TempAdapter.Random(config, 8, [LoraTarget.QProj, LoraTarget.DownProj], seed: 5);
        using var rounded = TempAdapter.Random(config, 8, [LoraTarget.QProj, LoraTarget.DownProj], seed: 5, bf16Values: true);
        using var pool = new PagePool(4000L * 64 * 4, 64);
        var a16 = AdapterResidency.TryCreate(pool, "a", 1, PeftAdapter.Load(t.Path, config), AdapterPageFormat.Bf16)!;
        var r32 = AdapterResidency.TryCreate(pool, "r", 2, PeftAdapter.Load(rounded.Path, config))!;
        var exact = AdapterResidency.TryCreate(pool, "e", 3, PeftAdapter.Load(t.Path, config))!;
        var x = TempAdapter.RandomArray(new Random(4), 9 * 160);
        float[] Delta(AdapterResidency r)
        {
            var y = new float[9 * 64];
            LoraKernel.Apply(y, x, 160, 64, [new LoraSegment(0, 9, r)], 1, LoraTarget.DownProj, new float[9 * 8], Simd.Best);
            return y;
        }
        Assert.Equal(Delta(r32), Delta(a16));
        Assert.NotEqual(Delta(exact), Delta(a16));   // the rounding did happen
        Compare.Close(log, "bf16 pages against the f32 weights", Delta(a16), Delta(exact), 2e-2);
    }

    private static float Round(float v) => BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(v) << 16);
}
