using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Loom.Inference.Kernels;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>The Q8 matmul's AVX2 dot product (no AVX-VNNI), its 512-bit one (AVX-512BW, where present) and the AVX2 input
/// quantizer against their scalar twins, bit for bit, forced where AVX-VNNI and AVX-512 are present too: weights at -128 and 127, inputs at ±127, odd shapes.</summary>
public sealed class Q8Avx2Tests(ITestOutputHelper log)
{
    /// <summary>Every stored value drawn from the whole int8 range (-128 one time in 256), a few rows all -128 and all 127,
    /// scales of either sign.</summary>
    private static unsafe WeightMatrix Weights(int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        var w = WeightMatrix.Allocate(WeightType.Q8, rows, cols);
        var q = new sbyte[Q8Layout.Block];
        for (int r = 0; r < rows; r++)
            for (int b = 0; b * Q8Layout.Block < cols; b++)
            {
                int len = Math.Min(Q8Layout.Block, cols - b * Q8Layout.Block);
                for (int j = 0; j < len; j++)
                    q[j] = r % 7 == 3 ? sbyte.MinValue : r % 11 == 5 ? sbyte.MaxValue : (sbyte)rng.Next(-128, 128);
                float scale = (float)(rng.NextDouble() - 0.5) * 0.02f;
                Q8Layout.SetBlock((byte*)w.Data, cols, r, b, q.AsSpan(0, len), scale);
            }
        return w;
    }

    /// <summary>Random rows; in some, blocks of one value (every input quantized to +127 or -127).</summary>
    private static float[] Inputs(int n, int cols, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n * cols];
        for (int b = 0; b < n; b++)
            for (int k0 = 0; k0 < cols; k0 += Q8Layout.Block)
            {
                int len = Math.Min(Q8Layout.Block, cols - k0), kind = rng.Next(4);
                float c = (float)(rng.NextDouble() + 0.1) * (kind == 0 ? 1 : -1);
                for (int j = 0; j < len; j++)
                    x[b * cols + k0 + j] = kind <= 1 ? c : (float)(rng.NextDouble() * 2 - 1) * 4;
            }
        return x;
    }

    private static unsafe float[] Product(WeightMatrix w, float[] x, int n, MatMulQ8.Q8Dot dot)
    {
        var y = new float[n * w.Rows];
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var xq = Q8Input.Quantize(xp, n, w.Cols, wide: dot == MatMulQ8.Q8Dot.Avx512);
            MatMulQ8.Rows(yp, w.Rows, xq, w, 0, n, 0, w.Rows, dot);
        }
        return y;
    }

    private static int[] Bits(float[] v) => Array.ConvertAll(v, BitConverter.SingleToInt32Bits);

    [SkippableTheory]
    [InlineData(16, 37, 1)]
    [InlineData(32, 100, 3)]
    [InlineData(48, 31, 4)]
    [InlineData(64, 200, 7)]
    [InlineData(80, 1000, 33)]
    [InlineData(16, 45, 70)]   // more inputs than one batch block
    public void Avx2MatMulEqualsTheScalarTwinBitForBit(int rows, int cols, int n)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "no AVX2 on this machine");
        using var w = Weights(rows, cols, rows + cols);
        var x = Inputs(n, cols, n);
        var naive = new float[n * rows];
        MatMulQ8.Naive(naive, x, w, n);
        var avx2 = Product(w, x, n, MatMulQ8.Q8Dot.Avx2);
        Compare.Close(log, $"q8 avx2 {rows}x{cols} n={n}", avx2, naive, 0);
        Assert.Equal(Bits(naive), Bits(avx2));
        if (AvxVnni.IsSupported) Assert.Equal(Bits(naive), Bits(Product(w, x, n, MatMulQ8.Q8Dot.AvxVnni)));
        if (Avx512BW.IsSupported) Assert.Equal(Bits(naive), Bits(Product(w, x, n, MatMulQ8.Q8Dot.Avx512)));
    }

    /// <summary>The largest products the AVX2 dot meets: |-128| · 127 twice in one s16 pair (32512, below 32767), in every
    /// lane of a block, with both signs of the input.</summary>
    [SkippableFact]
    public unsafe void Avx2MatMulIsExactAtTheLargestProducts()
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "no AVX2 on this machine");
        const int rows = 16, cols = 64, n = 5;
        using var w = WeightMatrix.Allocate(WeightType.Q8, rows, cols);
        var q = new sbyte[Q8Layout.Block];
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < 2; b++)
            {
                for (int j = 0; j < Q8Layout.Block; j++) q[j] = r % 2 == 0 ? sbyte.MinValue : (j + r) % 3 == 0 ? sbyte.MinValue : sbyte.MaxValue;
                Q8Layout.SetBlock((byte*)w.Data, cols, r, b, q, 1f / (r + 1));
            }
        var x = new float[n * cols];
        for (int b = 0; b < n; b++)
            for (int k = 0; k < cols; k++) x[b * cols + k] = b == 0 ? -2.5f : b == 1 ? 3f : (k + b) % 2 == 0 ? 1f : -1f;
        var naive = new float[n * rows];
        MatMulQ8.Naive(naive, x, w, n);
        Assert.Equal(Bits(naive), Bits(Product(w, x, n, MatMulQ8.Q8Dot.Avx2)));
        // the 512-bit dot's largest pair: stored bytes of 255 (value 127) and 0 (-128) times ±127, twice per 32-bit lane
        if (Avx512BW.IsSupported) Assert.Equal(Bits(naive), Bits(Product(w, x, n, MatMulQ8.Q8Dot.Avx512)));
    }

    [SkippableTheory]
    [InlineData(SimdLevel.Vector256)]
    [InlineData(SimdLevel.Vector512)]
    public unsafe void VectorInputQuantizationEqualsTheScalarOneAtEachWidth(SimdLevel level)
    {
        Skip.IfNot(Vector256.IsHardwareAccelerated, "no 256-bit vectors on this machine");
        const int blocks = 9, cols = 8 * 32 + 13;
        var rng = new Random(12);
        var x = new float[cols];
        for (int k = 0; k < cols; k++) x[k] = (float)(rng.NextDouble() * 2 - 1) * 3;
        for (int j = 0; j < 32; j++) x[32 + j] = 0;                        // an all-zero block: scale 0
        for (int j = 0; j < 32; j++) x[64 + j] = j - 16 + 0.5f;            // ties to even with a scale of 1
        x[64 + 31] = 127;
        for (int j = 0; j < 32; j++) x[96 + j] = -0.75f;                   // every value -127
        for (int j = 0; j < 32; j++) x[128 + j] = (j - 16) * 1e-40f;       // subnormal: 1 / scale overflows
        for (int j = 0; j < 32; j++) x[160 + j] = (j - 16) * 2e36f;        // near the top of the range
        x[200] = -5;                                                       // the block's extreme is negative
        x[x.Length - 1] = -7;                                              // in the partial last block
        var v = new sbyte[blocks * 32];
        var s = new float[blocks];
        var c = new int[blocks];
        fixed (float* xp = x)
        fixed (sbyte* vp = v)
        fixed (float* sp = s)
        fixed (int* cp = c)
            Q8Input.Row(xp, cols, vp, sp, cp, level);
        var q = new sbyte[32];
        for (int b = 0; b < blocks; b++)
        {
            int k0 = b * 32, len = Math.Min(32, cols - k0);
            float d = Q8Layout.QuantizeBlock(x.AsSpan(k0, len), q);
            Assert.Equal(BitConverter.SingleToInt32Bits(d), BitConverter.SingleToInt32Bits(s[b]));
            Assert.Equal(q.AsSpan(0, len).ToArray(), v.AsSpan(k0, len).ToArray());
            Assert.Equal(q.Take(len).Sum(t => t), c[b]);
        }
        Assert.Equal(new sbyte[] { -16, -14, -14, -12 }, v.AsSpan(64, 4).ToArray());   // -15.5, -14.5, -13.5, -12.5 to even
        Assert.All(v.AsSpan(96, 32).ToArray(), t => Assert.Equal(-127, t));
        Assert.All(v.AsSpan(cols, blocks * 32 - cols).ToArray(), t => Assert.Equal(0, t));
    }
}
