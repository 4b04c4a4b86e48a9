using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>Each fast kernel against its scalar twin, on sizes that hit the tiled paths and the edges.</summary>
public sealed class KernelTests(ITestOutputHelper log)
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    public static TheoryData<int, int, int, WeightType, SimdLevel, bool> MatMulCases()
    {
        var d = new TheoryData<int, int, int, WeightType, SimdLevel, bool>();
        foreach (var t in new[] { WeightType.F32, WeightType.BF16 })
            foreach (var level in new[] { SimdLevel.Vector512, SimdLevel.Vector256 })
            {
                d.Add(64, 64, 1, t, level, false);
                d.Add(130, 96, 5, t, level, false);     // rows not a multiple of 4, batch remainder
                d.Add(516, 320, 9, t, level, false);    // parallel chunks, two 4-row batch tiles + 1
                d.Add(37, 40, 3, t, level, false);      // cols not a multiple of the vector width
                d.Add(256, 64, 70, t, level, false);    // more inputs than one batch block
                d.Add(64, 64, 1, t, level, true);       // packed panels: decode
                d.Add(576, 37, 19, t, level, true);     // packed: two 8-input passes + 3 single, odd cols, parallel
                d.Add(256, 64, 70, t, level, true);     // packed: more inputs than one batch block
                d.Add(96, 44, 136, t, level, true);     // packed: inputs interleaved by the pool (17 groups of 8, 3 chunks), column tail
            }
        return d;
    }

    [SkippableTheory]
    [MemberData(nameof(MatMulCases))]
    public void MatMulMatchesNaive(int rows, int cols, int n, WeightType type, SimdLevel level, bool packed)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        using var rowMajor = WeightMatrix.FromFloats(Random(rows * cols, 1), rows, cols, type);
        using var w = packed ? rowMajor.Pack() : WeightMatrix.FromFloats(rowMajor.ToFloats(), rows, cols, type);
        Assert.Equal(rowMajor.ToFloats(), w.ToFloats());
        var x = Random(n * cols, 2);
        var fast = new float[n * rows];
        var naive = new float[n * rows];
        MatMulKernel.Forward(fast, x, w, n, level);
        MatMulKernel.Naive(naive, x, w, n);
        Compare.Close(log, $"matmul {rows}x{cols} n={n} {type} {level} packed={packed}", fast, naive, 1e-5);
        var reference = new float[n * rows];
        MatMulKernel.Naive(reference, x, rowMajor, n);
        Compare.Close(log, "naive on the packed vs the row-major layout", naive, reference, 1e-6);
    }

    /// <summary>The 256-bit row-major tiles (4 × 3, 4 × 2, 4 × 1, 8 × 1, and the edge rows' dot) give every output the same arithmetic,
    /// so a row's outputs are bitwise the same alone, in a batch, or one place further along in it (what the engine's
    /// bitwise cache and choice tests rely on at this level).</summary>
    [SkippableTheory]
    [InlineData(WeightType.F32, 77)]
    [InlineData(WeightType.BF16, 77)]
    [InlineData(WeightType.BF16, 96)]   // whole blocks of 16: blocks of 9 input rows and more widen the weights first
    public void MatMul256TilesDoNotDependOnTheBatch(WeightType type, int cols)
    {
        Skip.IfNot(MatMulKernel.Tiles256(SimdLevel.Vector256), "no AVX2 with FMA on this machine");
        // edge rows, two batch blocks, every tile shape; 77 columns: a column tail. With 96 bf16 columns the batch's blocks
        // (64 and 10 rows, the second ending in two tiles of 2) and the shifted batch's (64 and 9) take the widened weights,
        // and a block of 8 the bf16 tiles.
        const int rows = 70, n = 74;
        Assert.True(n - 65 >= MatMulKernel.WidenMinRows && 8 < MatMulKernel.WidenMinRows);
        using var w = WeightMatrix.FromFloats(Random(rows * cols, 30), rows, cols, type);
        var x = Random(n * cols, 31);
        var batch = new float[n * rows];
        MatMulKernel.Forward(batch, x, w, n, SimdLevel.Vector256);
        var naive = new float[n * rows];
        MatMulKernel.Naive(naive, x, w, n);
        Compare.Close(log, $"256-bit tiles {type}", batch, naive, 1e-5);
        var shifted = new float[(n - 1) * rows];
        MatMulKernel.Forward(shifted, x.AsSpan(cols), w, n - 1, SimdLevel.Vector256);
        Assert.Equal(batch.AsSpan(rows).ToArray(), shifted);
        // a block of 8 ends in a tile of 2 (bf16 tiles: fewer than WidenMinRows rows)
        var eight = new float[8 * rows];
        MatMulKernel.Forward(eight, x.AsSpan(0, 8 * cols), w, 8, SimdLevel.Vector256);
        Assert.Equal(batch.AsSpan(0, 8 * rows).ToArray(), eight);
        var alone = new float[rows];
        foreach (int b in new[] { 0, 1, 2, 3, 35, 64, 73 })
        {
            MatMulKernel.Forward(alone, x.AsSpan(b * cols, cols), w, 1, SimdLevel.Vector256);
            Assert.Equal(batch.AsSpan(b * rows, rows).ToArray(), alone);
        }
    }

    /// <summary>Packed bf16 panels that a full batch block's passes widen to f32 first give the bits of the bf16 kernel
    /// that widens in the loop (8 inputs alone: one pass, not widened); the block after a full one, not widened, gives
    /// those of its passes and single inputs alone.</summary>
    [SkippableTheory]
    [InlineData(64, 75)]     // a widened block, then a block of 11: one pass and 3 single inputs
    [InlineData(1536, 134)]  // the MLP's down projection width: two widened blocks and a block of 6 single inputs
    public void WidenedBf16PanelsGiveTheBitsOfTheBf16Kernels(int cols, int n)
    {
        Skip.If(Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the packed panel kernels run only at Vector512");
        Assert.True(MatMulKernel.WidenPanelMinRows == 64 && cols <= MatMulKernel.WidenPanelMaxCols);
        const int rows = 64;
        using var rowMajor = WeightMatrix.FromFloats(Random(rows * cols, 40), rows, cols, WeightType.BF16);
        using var w = rowMajor.Pack();
        var x = Random(n * cols, 41);
        var batch = new float[n * rows];
        MatMulKernel.Forward(batch, x, w, n, SimdLevel.Vector512);
        var eight = new float[8 * rows];
        var one = new float[rows];
        for (int start = 0; start < n; start += 64)   // the kernels' batch blocks
        {
            int length = Math.Min(64, n - start), passes = length / 8 * 8;
            for (int b = start; b < start + passes; b += 8)
            {
                MatMulKernel.Forward(eight, x.AsSpan(b * cols, 8 * cols), w, 8, SimdLevel.Vector512);
                Assert.Equal(batch.AsSpan(b * rows, 8 * rows).ToArray(), eight);
            }
            for (int b = start + passes; b < start + length; b++)
            {
                MatMulKernel.Forward(one, x.AsSpan(b * cols, cols), w, 1, SimdLevel.Vector512);
                Assert.Equal(batch.AsSpan(b * rows, rows).ToArray(), one);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(6)]
    public void FusedMatMulMatchesSeparateOnes(int n)
    {
        var k = new CpuKernels();
        using var a = WeightMatrix.FromFloats(Random(200 * 96, 20), 200, 96, WeightType.F32);
        using var b = WeightMatrix.FromFloats(Random(68 * 96, 21), 68, 96, WeightType.BF16);
        using var c = WeightMatrix.FromFloats(Random(36 * 96, 22), 36, 96, WeightType.F32);
        var x = Random(n * 96, 23);
        float[] ya = new float[n * 200], yb = new float[n * 68], yc = new float[n * 36];
        k.MatMul(ya, a, yb, b, yc, c, x, n);
        foreach (var (y, w) in new[] { (ya, a), (yb, b), (yc, c) })
        {
            var expected = new float[y.Length];
            MatMulKernel.Naive(expected, x, w, n);
            Compare.Close(log, $"fused matmul [{w.Rows}x{w.Cols}] n={n}", y, expected, 1e-5);
        }
    }

    [Fact]
    public void MatMulBf16ReadsTheRoundedValues()
    {
        var values = Random(16 * 64, 3);
        using var bf = WeightMatrix.FromFloats(values, 16, 64, WeightType.BF16);
        using var widened = WeightMatrix.FromFloats(bf.ToFloats(), 16, 64, WeightType.F32);
        var x = Random(64, 4);
        var a = new float[16];
        var b = new float[16];
        MatMulKernel.Forward(a, x, bf, 1, Simd.Best);
        MatMulKernel.Forward(b, x, widened, 1, Simd.Best);
        Compare.Close(log, "bf16 vs widened f32", a, b, 1e-6);
        // and bf16 rounding itself is round-to-nearest: within 2^-9 relative of the original
        var back = bf.ToFloats();
        for (int i = 0; i < values.Length; i++) Assert.True(Math.Abs(back[i] - values[i]) <= Math.Abs(values[i]) * (1.0 / 256), $"{values[i]} -> {back[i]}");
    }

    [Fact]
    public void RmsNormSoftmaxSiluMatchNaive()
    {
        var x = Random(200, 5, 3);
        var w = Random(200, 6);
        var a = new float[200];
        var b = new float[200];
        Ops.RmsNorm(a, x, w, 1e-5f);
        NaiveOps.RmsNorm(b, x, w, 1e-5f);
        Compare.Close(log, "rmsnorm", a, b, 1e-6);

        var s1 = Random(300, 7, 20);
        var s2 = (float[])s1.Clone();
        Ops.Softmax(s1);
        NaiveOps.Softmax(s2);
        Compare.Close(log, "softmax", s1, s2, 1e-5);
        Assert.Equal(1.0, s1.Sum(), 4);

        var gate = Random(700, 8, 6);
        var up = Random(700, 9, 2);
        NaiveOps.SiluMul(b = new float[700], gate, up);
        var inPlace = (float[])gate.Clone();
        Ops.SiluMul(inPlace, inPlace, up);   // output aliasing gate, as the transformer calls it
        Compare.Close(log, "silu·mul (in place)", inPlace, b, 1e-5);
    }

    [Fact]
    public void ArgmaxAndTopK()
    {
        var x = Random(1000, 10);
        x[123] = 5;
        x[456] = 4;
        x[789] = 4.5f;
        x[10] = float.NaN;
        Assert.Equal(123, Ops.Argmax(x));
        var top = new int[3];
        Assert.Equal(3, Ops.TopK(top, x, 3));
        Assert.Equal([123, 789, 456], top);
        var sorted = Enumerable.Range(0, x.Length).Where(i => !float.IsNaN(x[i])).OrderByDescending(i => x[i]).Take(50).ToArray();
        var top50 = new int[50];
        Ops.TopK(top50, x, 50);
        Assert.Equal(sorted, top50);
    }

    /// <summary>Attention at 256 bits with heads of 64 (query and output in registers, four keys scored at a time) gives
    /// bitwise the generic path's result: each score <see cref="VecOps.Dot"/> times the scale, <see cref="Ops.Softmax"/>,
    /// each output element <see cref="VecOps.Axpy"/> from zero, key after key.</summary>
    [Theory]
    [InlineData(1, 16)]
    [InlineData(7, 16)]
    [InlineData(16, 16)]
    [InlineData(37, 16)]
    [InlineData(130, 16)]
    [InlineData(7, 3)]     // blocks of 3 positions (a pool page of the SmolLM2 shape in f32): groups of keys span blocks
    [InlineData(130, 3)]
    [InlineData(131, 6)]
    public void Attention256Head64IsBitwiseTheGenericPath(int length, int bs)
    {
        const int hd = 64, kvHeads = 3;
        var cache = new KvCache(1, kvHeads * hd, 160, blockSize: bs);
        cache.Reserve(length);
        var kv = Random(length * kvHeads * hd * 2, 40, 2);
        for (int p = 0; p < length; p++)
        {
            kv.AsSpan(p * kvHeads * hd, kvHeads * hd).CopyTo(cache.Keys(0, p / bs).Slice(p % bs * kvHeads * hd));
            kv.AsSpan((length + p) * kvHeads * hd, kvHeads * hd).CopyTo(cache.Values(0, p / bs).Slice(p % bs * kvHeads * hd));
        }
        cache.Advance(length);
        var q = Random(hd, 41, 2);
        for (int h = 0; h < kvHeads; h++)
        {
            var actual = new float[hd];
            Attention.Head(actual, q, cache, 0, h, length, new float[160], SimdLevel.Vector256);
            var expected = GenericHead(q, cache, h, length);
            Assert.Equal(expected, actual);
        }
    }

    private static unsafe float[] GenericHead(float[] q, KvCache cache, int kvHead, int length)
    {
        int hd = q.Length, kvDim = cache.KvDim, bs = cache.BlockSize;
        float scale = 1f / MathF.Sqrt(hd);
        var scores = new float[length];
        var output = new float[hd];
        fixed (float* qp = q)
        fixed (float* op = output)
        {
            for (int j = 0; j < length; j++)
                fixed (float* k = cache.Keys(0, j / bs))
                    scores[j] = VecOps.Dot(qp, k + j % bs * kvDim + kvHead * hd, hd, SimdLevel.Vector256) * scale;
            Ops.Softmax(scores);
            for (int j = 0; j < length; j++)
                fixed (float* v = cache.Values(0, j / bs))
                    VecOps.Axpy(op, v + j % bs * kvDim + kvHead * hd, scores[j], hd, SimdLevel.Vector256);
        }
        return output;
    }

    [SkippableTheory]
    [InlineData(SimdLevel.Vector512, 32)]
    [InlineData(SimdLevel.Vector256, 32)]
    [InlineData(SimdLevel.Vector512, 64)]   // the register-resident headDim-64 path
    [InlineData(SimdLevel.Vector256, 64)]
    public void AttentionMatchesNaive(SimdLevel level, int hd)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        int kvHeads = 2, length = 37;
        var cache = new KvCache(1, kvHeads * hd, 64, blockSize: 16);
        cache.Reserve(length);
        var kv = Random(length * kvHeads * hd * 2, 11, 2);
        for (int p = 0; p < length; p++)
        {
            kv.AsSpan(p * kvHeads * hd, kvHeads * hd).CopyTo(cache.Keys(0, p / 16).Slice(p % 16 * kvHeads * hd));
            kv.AsSpan((length + p) * kvHeads * hd, kvHeads * hd).CopyTo(cache.Values(0, p / 16).Slice(p % 16 * kvHeads * hd));
        }
        cache.Advance(length);
        var q = Random(hd, 12, 2);
        var keysT = new float[64 * kvHeads * hd];
        Attention.TransposeKeys(keysT, cache, 0, length, kvHeads, hd);
        for (int h = 0; h < kvHeads; h++)
        {
            var a = new float[hd];
            var b = new float[hd];
            Attention.Head(a, q, cache, 0, h, length, new float[64], level);
            Attention.NaiveHead(b, q, cache, 0, h, length);
            Compare.Close(log, $"attention kv head {h} {level}", a, b, 1e-5);
            if (Simd.Best == SimdLevel.Vector512)
            {
                // the prefill path: keys transposed into 16-position blocks, the last one partial and masked
                foreach (int len in new[] { length, 16, 1 })
                {
                    var c = new float[hd];
                    Attention.NaiveHead(b, q, cache, 0, h, len);
                    Attention.HeadTransposed(c, q, keysT, (length + 15) / 16, cache, 0, h, len, new float[64]);
                    Compare.Close(log, $"transposed-keys attention kv head {h} length {len}", c, b, 1e-5);
                }
            }
        }
    }
}
