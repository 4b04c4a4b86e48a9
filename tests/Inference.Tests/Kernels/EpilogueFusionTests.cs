using Loom.Inference.Kernels;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>The matmul epilogues (residual add, SiLU·mul of gate and up) against the separate passes they replace, on
/// the same kernels (bit for bit: the product and the element-wise arithmetic are the same), and against their scalar
/// twins; shapes that hit the packed and row-major paths, partial tiles, several batch blocks and parallel chunks.</summary>
public sealed class EpilogueFusionTests(ITestOutputHelper log)
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    public static TheoryData<int, int, int, WeightType, SimdLevel, bool> Cases()
    {
        var d = new TheoryData<int, int, int, WeightType, SimdLevel, bool>();
        foreach (var level in new[] { SimdLevel.Vector512, SimdLevel.Vector256 })
        {
            foreach (var t in new[] { WeightType.F32, WeightType.BF16 })
            {
                d.Add(64, 64, 1, t, level, false);
                d.Add(130, 96, 5, t, level, false);     // rows not a multiple of 4 or of the tile
                d.Add(37, 40, 3, t, level, false);      // cols not a multiple of the vector width
                d.Add(516, 320, 9, t, level, false);    // parallel chunks, batch tiles of 4 + 1
                d.Add(64, 64, 1, t, level, true);       // packed panels: decode
                d.Add(576, 37, 19, t, level, true);     // packed: two 8-input passes + 3 single, odd cols
                d.Add(256, 64, 70, t, level, true);     // packed: more inputs than one batch block
                d.Add(1536, 576, 32, t, level, true);   // the SmolLM2-135M MLP at batch 32: parallel chunks of several tiles
            }
            d.Add(64, 64, 1, WeightType.Q8, level, true);
            d.Add(576, 37, 5, WeightType.Q8, level, true);     // a partial last block, 4 + 1 inputs
            d.Add(512, 96, 9, WeightType.Q8, level, true);     // parallel chunks
            d.Add(256, 688, 70, WeightType.Q8, level, true);   // more inputs than one batch block
        }
        return d;
    }

    private static WeightMatrix Matrix(int rows, int cols, WeightType type, bool packed, int seed)
    {
        var m = WeightMatrix.FromFloats(Random(rows * cols, seed, type == WeightType.Q8 ? 0.1f : 1), rows, cols, type);
        if (!packed || m.Packed) return m;
        var p = m.Pack();
        m.Dispose();
        return p;
    }

    private static void SkipUnsupported(WeightType type, SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        Skip.If(type == WeightType.Q8 && !MatMulQ8.FastPath(level), "neither AVX-VNNI nor AVX2 on this machine: the Q8 fast kernels are not tested here");
    }

    private int BitwiseDifferences(string what, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int differ = 0;
        for (int i = 0; i < a.Length; i++) if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i])) differ++;
        log.WriteLine($"{what}: {differ} of {a.Length} values differ bitwise");
        return differ;
    }

    /// <summary>y += x Wᵀ in the epilogue equals the product followed by a separate add, bit for bit; the scalar twin
    /// equals its own two-pass version bit for bit; the two are close.</summary>
    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void AddEpilogueEqualsProductThenAdd(int rows, int cols, int n, WeightType type, SimdLevel level, bool packed)
    {
        SkipUnsupported(type, level);
        using var w = Matrix(rows, cols, type, packed, 1);
        var x = Random(n * cols, 2);
        var y0 = Random(n * rows, 3, 4);

        var fused = (float[])y0.Clone();
        MatMulKernel.ForwardAdd(fused, x, w, n, level);
        var product = new float[n * rows];
        MatMulKernel.Forward(product, x, w, n, level);
        var separate = (float[])y0.Clone();
        Ops.AddInPlace(separate, product);
        Assert.Equal(0, BitwiseDifferences($"add epilogue {rows}x{cols} n={n} {type} {level} packed={packed} vs product + add", fused, separate));

        var naive = (float[])y0.Clone();
        MatMulKernel.NaiveAdd(naive, x, w, n);
        var naiveProduct = new float[n * rows];
        MatMulKernel.Naive(naiveProduct, x, w, n);
        for (int i = 0; i < naiveProduct.Length; i++) naiveProduct[i] += y0[i];
        Assert.Equal(0, BitwiseDifferences("scalar twin vs its two passes", naive, naiveProduct));
        Compare.Close(log, "add epilogue vs scalar twin", fused, naive, 1e-5);
    }

    /// <summary>silu(x Gateᵀ) · (x Upᵀ) in the epilogue equals the two products followed by a separate SiLU·mul pass, bit
    /// for bit; its scalar twin is close (it rounds the activation in double).</summary>
    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void SiluMulEpilogueEqualsProductsThenSiluMul(int rows, int cols, int n, WeightType type, SimdLevel level, bool packed)
    {
        SkipUnsupported(type, level);
        using var gate = Matrix(rows, cols, type, packed, 4);
        using var up = Matrix(rows, cols, type, packed, 5);
        var x = Random(n * cols, 6);

        var fused = new float[n * rows];
        MatMulKernel.ForwardSiluMul(fused, x, gate, up, n, level);
        float[] g = new float[n * rows], u = new float[n * rows], separate = new float[n * rows];
        MatMulKernel.Forward(g, x, gate, n, level);
        MatMulKernel.Forward(u, x, up, n, level);
        Ops.SiluMul(separate, g, u);
        Assert.Equal(0, BitwiseDifferences($"silu·mul epilogue {rows}x{cols} n={n} {type} {level} packed={packed} vs products + silu·mul", fused, separate));

        var naive = new float[n * rows];
        MatMulKernel.NaiveSiluMul(naive, x, gate, up, n);
        MatMulKernel.Naive(g, x, gate, n);
        MatMulKernel.Naive(u, x, up, n);
        var naiveSeparate = new float[n * rows];
        NaiveOps.SiluMul(naiveSeparate, g, u);
        Assert.Equal(0, BitwiseDifferences("scalar twin vs its separate passes", naive, naiveSeparate));
        Compare.Close(log, "silu·mul epilogue vs scalar twin", fused, naive, 1e-5);
    }

    /// <summary>Gate and up of unequal shapes, or a SiLU·mul target without its up matrix, are refused.</summary>
    [Fact]
    public unsafe void SiluMulPairsMustMatch()
    {
        using var gate = WeightMatrix.FromFloats(Random(64 * 32, 7), 64, 32, WeightType.F32);
        using var up = WeightMatrix.FromFloats(Random(32 * 32, 8), 32, 32, WeightType.F32);
        var h = new float[64];
        var x = Random(32, 9);
        Assert.Throws<ArgumentException>(() => MatMulKernel.ForwardSiluMul(h, x, gate, up, 1, Simd.Best));
        fixed (float* hp = h)
        fixed (float* xp = x)
        {
            nint ha = (nint)hp, xa = (nint)xp;
            Assert.Throws<ArgumentException>(() => MatMulKernel.Forward([new MatMulTarget(ha, gate, MatMulEpilogue.SiluMul)], (float*)xa, 1, Simd.Best));
        }
    }
}
