using Loom.Inference.Kernels;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>The int8 weight layout and its matmul (AVX-VNNI, or AVX2 without it) against the scalar twin (bit for bit) and against the f32
/// product of the same dequantized weights (within the activations' quantization error).</summary>
public sealed class Q8KernelTests(ITestOutputHelper log)
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    public static TheoryData<int, int, int, SimdLevel> Cases()
    {
        var d = new TheoryData<int, int, int, SimdLevel>();
        foreach (var level in new[] { SimdLevel.Vector512, SimdLevel.Vector256 })
        {
            d.Add(64, 64, 1, level);      // decode, serial
            d.Add(576, 37, 5, level);     // a partial last block, 4 + 1 inputs
            d.Add(512, 96, 9, level);     // parallel chunks, two 4-input tiles + 1
            d.Add(256, 688, 70, level);   // more inputs than one batch block, 688 = 21.5 blocks
        }
        return d;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void MatMulEqualsTheScalarTwinBitForBit(int rows, int cols, int n, SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        Skip.IfNot(MatMulQ8.FastPath(level), "no AVX-VNNI or AVX2 on this machine: the Q8 fast kernel is not tested here");
        var values = Random(rows * cols, 1, 0.1f);
        using var w = WeightMatrix.FromFloats(values, rows, cols, WeightType.Q8);
        var x = Random(n * cols, 2);
        var fast = new float[n * rows];
        var naive = new float[n * rows];
        MatMulKernel.Forward(fast, x, w, n, level);
        MatMulQ8.Naive(naive, x, w, n);
        Compare.Close(log, $"q8 matmul {rows}x{cols} n={n} {level}", fast, naive, 0);
        Assert.Equal(naive, fast);
        // against the f32 product of the dequantized weights: only the inputs' rounding to int8 differs
        using var widened = WeightMatrix.FromFloats(w.ToFloats(), rows, cols, WeightType.F32);
        var f32 = new float[n * rows];
        MatMulKernel.Naive(f32, x, widened, n);
        Compare.Close(log, "q8 x q8 vs dequantized weights x f32 inputs", fast, f32, 1e-2);
    }

    [SkippableFact]
    public void ResultDoesNotDependOnWorkersOrBatch()
    {
        Skip.IfNot(MatMulQ8.FastPath(Simd.Best), "no AVX-VNNI or AVX2 on this machine");
        const int rows = 1024, cols = 320, n = 11;
        using var w = WeightMatrix.FromFloats(Random(rows * cols, 3, 0.05f), rows, cols, WeightType.Q8);
        var x = Random(n * cols, 4);
        float[] Run(int workers, int count)
        {
            using var k = new CpuKernels(Simd.Best, workers);
            var y = new float[count * rows];
            k.MatMul(y, x.AsSpan(0, count * cols), w, count);
            return y;
        }
        var one = Run(1, n);
        Assert.Equal(one, Run(2, n));
        Assert.Equal(one, Run(5, n));
        var alone = Run(2, 1);
        Assert.Equal(one.AsSpan(0, rows).ToArray(), alone);
    }

    /// <summary>The backward product through a Q8 base (training dX = dY·W) reads the dequantized weights: the same
    /// numbers as through their f32 copy.</summary>
    [Theory]
    [InlineData(96, 64, 5)]
    [InlineData(320, 688, 19)]
    public void TransposedMatMulReadsTheDequantizedWeights(int rows, int cols, int n)
    {
        using var w = WeightMatrix.FromFloats(Random(rows * cols, 9, 0.1f), rows, cols, WeightType.Q8);
        using var widened = WeightMatrix.FromFloats(w.ToFloats(), rows, cols, WeightType.F32);
        var x = Random(n * rows, 10);
        var y = new float[n * cols];
        var expected = new float[n * cols];
        MatMulTransposedKernel.Forward(y, x, w, n, Simd.Best);
        MatMulTransposedKernel.Naive(expected, x, widened, n);
        Compare.Close(log, $"transposed q8 {rows}x{cols} n={n}", y, expected, 1e-5);
    }

    [Fact]
    public void ScalarLevelRunsTheTwin()
    {
        using var w = WeightMatrix.FromFloats(Random(48 * 70, 5), 48, 70, WeightType.Q8);
        var x = Random(3 * 70, 6);
        var y = new float[3 * 48];
        var naive = new float[3 * 48];
        using var k = new CpuKernels(SimdLevel.Scalar, 1);
        k.MatMul(y, x, w, 3);
        MatMulQ8.Naive(naive, x, w, 3);
        Assert.Equal(naive, y);
    }

    [Fact]
    public void QuantizedWeightsAreWithinHalfAStepOfTheOriginals()
    {
        const int rows = 32, cols = 100;
        var values = Random(rows * cols, 7);
        values[5] = 0;
        for (int k = 32; k < 64; k++) values[k] = 0;   // an all-zero block: scale 0, values 0
        using var w = WeightMatrix.FromFloats(values, rows, cols, WeightType.Q8);
        Assert.Equal(Q8Layout.Bytes(rows, cols), w.ByteCount);
        Assert.Equal(2 * 4 * 544, w.ByteCount);
        var back = w.ToFloats();
        double worst = 0;
        for (int r = 0; r < rows; r++)
            for (int b = 0; b * 32 < cols; b++)
            {
                int k0 = b * 32, len = Math.Min(32, cols - k0);
                float amax = 0;
                for (int j = 0; j < len; j++) amax = MathF.Max(amax, MathF.Abs(values[r * cols + k0 + j]));
                for (int j = 0; j < len; j++)
                {
                    int i = r * cols + k0 + j;
                    double err = Math.Abs(back[i] - values[i]);
                    // half a step, plus the scale's rounding to f16 (2^-11 relative) times up to 127 steps
                    Assert.True(err <= amax / 254 + amax / 2048 + 1e-9, $"({r},{k0 + j}): {values[i]} became {back[i]}");
                    worst = Math.Max(worst, err / Math.Max(amax, 1e-30f));
                    Assert.Equal(back[i], w.At(r, k0 + j));
                }
            }
        Assert.All(back.AsSpan(32, 32).ToArray(), v => Assert.Equal(0f, v));
        log.WriteLine($"worst error / block max: {worst:E3} (bound 1/254 + 1/2048 = {1.0 / 254 + 1.0 / 2048:E3})");
    }

    [Fact]
    public unsafe void AStoredBlockReadsBackExactly()
    {
        // a GGUF Q8_0 block: any int8 values (-128 included) and a scale
        using var w = WeightMatrix.Allocate(WeightType.Q8, 16, 64);
        var q = new sbyte[32];
        for (int j = 0; j < 32; j++) q[j] = (sbyte)(j * 8 - 128);
        Q8Layout.SetBlock((byte*)w.Data, 64, 9, 1, q, 0.375f);
        Q8Layout.SetBlock((byte*)w.Data, 64, 3, 0, q, 3e-6f);   // an f16 subnormal: widened exactly by the kernel too
        for (int j = 0; j < 32; j++) Assert.Equal(q[j] * 0.375f, w.At(9, 32 + j));
        Assert.Equal(0f, w.At(9, 0));
        Assert.Equal(0f, w.At(8, 40));
        float tiny = (float)(Half)3e-6f;
        for (int j = 0; j < 32; j++) Assert.Equal(q[j] * tiny, w.At(3, j));
        var x = Random(64, 11);
        var fast = new float[16];
        var naive = new float[16];
        if (MatMulQ8.FastPath(Simd.Best)) MatMulKernel.Forward(fast, x, w, 1, Simd.Best);
        MatMulQ8.Naive(naive, x, w, 1);
        if (MatMulQ8.FastPath(Simd.Best)) Assert.Equal(naive, fast);
        Assert.NotEqual(0f, naive[3]);
    }

    [Fact]
    public unsafe void VectorInputQuantizationEqualsTheScalarOne()
    {
        const int cols = 200;
        var x = Random(cols, 8, 3);
        x[40] = 0.5f * x[41];
        for (int k = 64; k < 96; k++) x[k] = 0;
        var v = new sbyte[7 * 32];
        var s = new float[7];
        var c = new int[7];
        fixed (float* xp = x)
        fixed (sbyte* vp = v)
        fixed (float* sp = s)
        fixed (int* cp = c)
            Q8Input.Row(xp, cols, vp, sp, cp);
        var q = new sbyte[32];
        for (int b = 0; b < 7; b++)
        {
            int k0 = b * 32, len = Math.Min(32, cols - k0);
            Assert.Equal(Q8Layout.QuantizeBlock(x.AsSpan(k0, len), q), s[b]);
            Assert.Equal(q.AsSpan(0, len).ToArray(), v.AsSpan(k0, len).ToArray());
            Assert.Equal(q.Take(len).Sum(t => t), c[b]);
        }
        Assert.All(v.AsSpan(cols, 7 * 32 - cols).ToArray(), t => Assert.Equal(0, t));
    }
}
