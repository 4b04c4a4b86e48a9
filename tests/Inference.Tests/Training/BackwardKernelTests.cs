using Loom.Inference.Kernels;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Training;

/// <summary>The backward kernels against their scalar twins on random data: packed and row-major weights, F32 and BF16,
/// shapes with edges; the worst difference is printed.</summary>
public sealed class BackwardKernelTests(ITestOutputHelper log)
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    [Theory]
    [InlineData(64, 96, 5, WeightType.F32, true)]
    [InlineData(64, 96, 5, WeightType.BF16, true)]
    [InlineData(2048, 48, 3, WeightType.F32, true)]
    [InlineData(64, 96, 7, WeightType.F32, false)]
    [InlineData(40, 37, 4, WeightType.BF16, false)]
    [InlineData(544, 96, 19, WeightType.F32, true)]     // three row blocks (256, 256, 32), 8-row tiles and single rows
    [InlineData(544, 96, 19, WeightType.BF16, true)]
    [InlineData(288, 80, 17, WeightType.BF16, false)]   // a partial 32-column block
    [InlineData(300, 50, 9, WeightType.F32, false)]
    public void TransposedMatMulMatchesItsScalarTwin(int rows, int cols, int n, WeightType type, bool pack)
    {
        using var w0 = WeightMatrix.FromFloats(Random(rows * cols, 1), rows, cols, type);
        using var w = pack ? w0.Pack() : null;
        var m = w ?? w0;
        var x = Random(n * rows, 2);
        var fast = new float[n * cols];
        var naive = new float[n * cols];
        MatMulTransposedKernel.Forward(fast, x, m, n, Simd.Best);
        MatMulTransposedKernel.Naive(naive, x, w0, n);
        Compare.Close(log, $"x W [{rows},{cols}] {type} packed={pack} at {Simd.Best}", fast, naive, 1e-5);
        if (Simd.Best != SimdLevel.Vector512) log.WriteLine("no AVX-512 here: the packed path was not exercised");
    }

    [Theory]
    [InlineData(WeightType.F32, true)]
    [InlineData(WeightType.BF16, true)]
    [InlineData(WeightType.BF16, false)]
    public void TransposedMatMulRowDoesNotDependOnTheRestOfTheBatch(WeightType type, bool pack)
    {
        int rows = 320, cols = 96;
        using var w0 = WeightMatrix.FromFloats(Random(rows * cols, 1), rows, cols, type);
        using var w = pack ? w0.Pack() : null;
        var m = w ?? w0;
        // row 0 alone, then the same row first in a batch of 13 (an 8-row tile) and last in a batch of 11 (a single row)
        var x = Random(13 * rows, 2);
        var alone = new float[cols];
        MatMulTransposedKernel.Forward(alone, x.AsSpan(0, rows), m, 1, Simd.Best);
        var batch = new float[13 * cols];
        MatMulTransposedKernel.Forward(batch, x, m, 13, Simd.Best);
        Assert.True(alone.AsSpan().SequenceEqual(batch.AsSpan(0, cols)), "row 0 differs inside an 8-row tile");
        var x2 = new float[11 * rows];
        x.AsSpan(rows, 10 * rows).CopyTo(x2);
        x.AsSpan(0, rows).CopyTo(x2.AsSpan(10 * rows));
        var batch2 = new float[11 * cols];
        MatMulTransposedKernel.Forward(batch2, x2, m, 11, Simd.Best);
        Assert.True(alone.AsSpan().SequenceEqual(batch2.AsSpan(10 * cols, cols)), "row 0 differs as a single row after a tile");
    }

    [Theory]
    [InlineData(23, 16)]
    [InlineData(23, 64)]   // the AVX-512 path for heads of 64
    [InlineData(80, 64)]   // more than one block of 64 keys
    public void TrainingAttentionMatchesItsScalarTwin(int T, int hd)
    {
        int heads = 6, kvHeads = 2;
        var start = new int[T];
        for (int t = 0; t < T; t++) start[t] = t < 9 ? 0 : 9;  // two packed examples
        var q = Random(T * heads * hd, 3); var k = Random(T * kvHeads * hd, 4); var v = Random(T * kvHeads * hd, 5);
        var o1 = new float[T * heads * hd]; var o2 = new float[o1.Length];
        var p1 = new float[heads * T * T]; var p2 = new float[p1.Length];
        TrainingAttention.Forward(o1, p1, q, k, v, start, T, heads, kvHeads, hd, Simd.Best);
        NaiveTrainingAttention.Forward(o2, p2, q, k, v, start, T, heads, kvHeads, hd);
        Compare.Close(log, "attention output", o1, o2, 1e-5);
        var dOut = Random(o1.Length, 6);
        var dq1 = new float[q.Length]; var dk1 = new float[k.Length]; var dv1 = new float[v.Length];
        var dq2 = new float[q.Length]; var dk2 = new float[k.Length]; var dv2 = new float[v.Length];
        TrainingAttention.Backward(dq1, dk1, dv1, dOut, p1, q, k, v, start, T, heads, kvHeads, hd,
            new float[heads * T * hd], new float[heads * T * hd], new float[heads * T], Simd.Best);
        NaiveTrainingAttention.Backward(dq2, dk2, dv2, dOut, p2, q, k, v, start, T, heads, kvHeads, hd);
        Compare.Close(log, "dq", dq1, dq2, 1e-5);
        Compare.Close(log, "dk", dk1, dk2, 1e-5);
        Compare.Close(log, "dv", dv1, dv2, 1e-5);
        // packing: no probability crosses from the second example into the first
        for (int h = 0; h < heads; h++)
            for (int t = 9; t < T; t++)
                for (int j = 0; j < 9; j++) Assert.Equal(0f, p2[(h * T + t) * T + j]);
    }

    [Fact]
    public void LoraBackwardMatchesItsScalarTwin()
    {
        int T = 11, r = 5, inDim = 40, outDim = 24;
        var x = Random(T * inDim, 7); var a = Random(r * inDim, 8); var bt = Random(r * outDim, 9); var dY = Random(T * outDim, 10);
        var u = new float[T * r];
        LoraTrainingKernel.Shrink(u, x, a, T, r, inDim, Simd.Best);
        var u2 = new float[T * r];
        NaiveLoraTraining.Shrink(u2, x, a, T, r, inDim);
        Compare.Close(log, "shrink", u, u2, 1e-5);
        var y1 = Random(T * outDim, 11); var y2 = (float[])y1.Clone();
        LoraTrainingKernel.Expand(y1, u, bt, 0.5f, T, r, outDim, Simd.Best);
        NaiveLoraTraining.Expand(y2, u, bt, 0.5f, T, r, outDim);
        Compare.Close(log, "expand", y1, y2, 1e-5);
        var dx1 = Random(T * inDim, 12); var dx2 = (float[])dx1.Clone();
        var da1 = new float[r * inDim]; var da2 = new float[r * inDim]; var db1 = new float[r * outDim]; var db2 = new float[r * outDim];
        LoraTrainingKernel.Backward(dx1, da1, db1, new float[T * r], dY, x, u, a, bt, 0.5f, T, r, inDim, outDim, Simd.Best);
        NaiveLoraTraining.Backward(dx2, da2, db2, dY, x, u, a, bt, 0.5f, T, r, inDim, outDim);
        Compare.Close(log, "dx", dx1, dx2, 1e-5);
        Compare.Close(log, "dA", da1, da2, 1e-5);
        Compare.Close(log, "dBt", db1, db2, 1e-5);
    }

    [Fact]
    public void RowOpsMatchTheirScalarTwins()
    {
        int d = 70;
        var x = Random(d, 13); var w = Random(d, 14); var dy = Random(d, 15);
        var a = new float[d]; var b = new float[d];
        BackwardOps.RmsNorm(a, dy, x, w, 1e-5f, new float[d], accumulate: false);
        NaiveBackwardOps.RmsNorm(b, dy, x, w, 1e-5f, accumulate: false);
        Compare.Close(log, "rmsnorm backward", a, b, 1e-5);
        var g = Random(d, 16, 4); var up = Random(d, 17);
        var dg1 = new float[d]; var du1 = new float[d]; var dg2 = new float[d]; var du2 = new float[d];
        BackwardOps.SiluMul(dg1, du1, dy, g, up);
        NaiveBackwardOps.SiluMul(dg2, du2, dy, g, up);
        Compare.Close(log, "silu·up backward dg", dg1, dg2, 1e-5);
        Compare.Close(log, "silu·up backward du", du1, du2, 1e-5);
        var logits = Random(3000, 18, 20);
        var l1 = new float[3000]; var l2 = new float[3000];
        double c1 = BackwardOps.CrossEntropy(l1, logits, 17, 0.25f), c2 = NaiveBackwardOps.CrossEntropy(l2, logits, 17, 0.25f);
        Assert.True(Math.Abs(c1 - c2) < 1e-4 * Math.Abs(c2), $"{c1} vs {c2}");
        Compare.Close(log, "cross-entropy gradient", l1, l2, 1e-5);
        // rope inverse undoes rope
        var v = Random(64, 19); var orig = (float[])v.Clone();
        var cos = Random(8, 20); var sin = new float[8];
        for (int i = 0; i < 8; i++) { cos[i] = MathF.Cos(i * 0.3f); sin[i] = MathF.Sin(i * 0.3f); }
        Ops.Rope(v, 4, 16, cos, sin);
        BackwardOps.RopeInverse(v, 4, 16, cos, sin);
        Compare.Close(log, "rope then inverse", v, orig, 1e-6);
    }
}

