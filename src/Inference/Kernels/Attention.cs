using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>Causal attention of one query head over a sequence's KV cache, read block by block
/// through <see cref="IKvCache"/> (so a paged pool can stand behind it).</summary>
public static unsafe partial class Attention
{
    /// <summary>output (headDim) = Σ_j softmax_j(q·k_j / sqrt(headDim)) v_j over positions j in [0, length).
    /// scores: scratch of at least <paramref name="length"/> floats.</summary>
    public static void Head(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead,
        int length, Span<float> scores, SimdLevel level)
    {
        int headDim = q.Length;
        int bs = cache.BlockSize;
        int kvDim = cache.KvDim;
        float scale = 1f / MathF.Sqrt(headDim);
        if (headDim == 64 && level == SimdLevel.Vector512)
        {
            Head64(output, q, cache, layer, kvHead, length, scores, scale);
            return;
        }
        if (headDim == 64 && level == SimdLevel.Vector256)
        {
            Head64x256(output, q, cache, layer, kvHead, length, scores, scale);
            return;
        }
        fixed (float* qp = q)
        fixed (float* op = output)
        fixed (float* sp = scores)
        {
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* kb = cache.Keys(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        sp[j0 + r] = VecOps.Dot(qp, kb + r * kvDim + kvHead * headDim, headDim, level) * scale;
                }
            }
            Ops.Softmax(scores[..length]);
            new Span<float>(op, headDim).Clear();
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* vb = cache.Values(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        VecOps.Axpy(op, vb + r * kvDim + kvHead * headDim, sp[j0 + r], headDim, level);
                }
            }
        }
    }

    /// <summary>headDim 64 at 256 bits: the query stays in 8 registers and four keys are scored at a time (four independent
    /// chains where one dot product is a chain of 8 dependent FMAs), the output accumulates in 8 registers instead of
    /// memory. Each score is <see cref="VecOps.Dot"/>'s operations in its order, times the scale, and each output element
    /// <see cref="VecOps.Axpy"/>'s from zero, so the result is bitwise the generic path's (which the prefix cache's exactness
    /// at this level rests on).</summary>
    private static void Head64x256(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length, Span<float> scores, float scale)
    {
        int bs = cache.BlockSize, kvDim = cache.KvDim, off = kvHead * 64;
        fixed (float* qp = q)
        fixed (float* sp = scores)
        fixed (float* op = output)
        {
            var q0 = Vector256.Load(qp); var q1 = Vector256.Load(qp + 8); var q2 = Vector256.Load(qp + 16); var q3 = Vector256.Load(qp + 24);
            var q4 = Vector256.Load(qp + 32); var q5 = Vector256.Load(qp + 40); var q6 = Vector256.Load(qp + 48); var q7 = Vector256.Load(qp + 56);
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* kb = cache.Keys(layer, block))
                {
                    int n = Math.Min(bs, length - j0), r = 0;
                    for (; r + 4 <= n; r += 4)
                    {
                        float* k0 = kb + r * kvDim + off, k1 = k0 + kvDim, k2 = k1 + kvDim, k3 = k2 + kvDim;
                        Vector256<float> c0 = Vector256<float>.Zero, c1 = Vector256<float>.Zero, c2 = Vector256<float>.Zero, c3 = Vector256<float>.Zero;
                        c0 = Vector256.FusedMultiplyAdd(q0, Vector256.Load(k0), c0); c1 = Vector256.FusedMultiplyAdd(q0, Vector256.Load(k1), c1);
                        c2 = Vector256.FusedMultiplyAdd(q0, Vector256.Load(k2), c2); c3 = Vector256.FusedMultiplyAdd(q0, Vector256.Load(k3), c3);
                        c0 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(k0 + 8), c0); c1 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(k1 + 8), c1);
                        c2 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(k2 + 8), c2); c3 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(k3 + 8), c3);
                        c0 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(k0 + 16), c0); c1 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(k1 + 16), c1);
                        c2 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(k2 + 16), c2); c3 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(k3 + 16), c3);
                        c0 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(k0 + 24), c0); c1 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(k1 + 24), c1);
                        c2 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(k2 + 24), c2); c3 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(k3 + 24), c3);
                        c0 = Vector256.FusedMultiplyAdd(q4, Vector256.Load(k0 + 32), c0); c1 = Vector256.FusedMultiplyAdd(q4, Vector256.Load(k1 + 32), c1);
                        c2 = Vector256.FusedMultiplyAdd(q4, Vector256.Load(k2 + 32), c2); c3 = Vector256.FusedMultiplyAdd(q4, Vector256.Load(k3 + 32), c3);
                        c0 = Vector256.FusedMultiplyAdd(q5, Vector256.Load(k0 + 40), c0); c1 = Vector256.FusedMultiplyAdd(q5, Vector256.Load(k1 + 40), c1);
                        c2 = Vector256.FusedMultiplyAdd(q5, Vector256.Load(k2 + 40), c2); c3 = Vector256.FusedMultiplyAdd(q5, Vector256.Load(k3 + 40), c3);
                        c0 = Vector256.FusedMultiplyAdd(q6, Vector256.Load(k0 + 48), c0); c1 = Vector256.FusedMultiplyAdd(q6, Vector256.Load(k1 + 48), c1);
                        c2 = Vector256.FusedMultiplyAdd(q6, Vector256.Load(k2 + 48), c2); c3 = Vector256.FusedMultiplyAdd(q6, Vector256.Load(k3 + 48), c3);
                        c0 = Vector256.FusedMultiplyAdd(q7, Vector256.Load(k0 + 56), c0); c1 = Vector256.FusedMultiplyAdd(q7, Vector256.Load(k1 + 56), c1);
                        c2 = Vector256.FusedMultiplyAdd(q7, Vector256.Load(k2 + 56), c2); c3 = Vector256.FusedMultiplyAdd(q7, Vector256.Load(k3 + 56), c3);
                        sp[j0 + r] = Vector256.Sum(c0) * scale;
                        sp[j0 + r + 1] = Vector256.Sum(c1) * scale;
                        sp[j0 + r + 2] = Vector256.Sum(c2) * scale;
                        sp[j0 + r + 3] = Vector256.Sum(c3) * scale;
                    }
                    for (; r < n; r++) sp[j0 + r] = VecOps.Dot(qp, kb + r * kvDim + off, 64, SimdLevel.Vector256) * scale;
                }
            }
            Ops.Softmax(scores[..length]);
            Vector256<float> o0 = Vector256<float>.Zero, o1 = Vector256<float>.Zero, o2 = Vector256<float>.Zero, o3 = Vector256<float>.Zero;
            Vector256<float> o4 = Vector256<float>.Zero, o5 = Vector256<float>.Zero, o6 = Vector256<float>.Zero, o7 = Vector256<float>.Zero;
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* vb = cache.Values(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                    {
                        float* v = vb + r * kvDim + off;
                        var p = Vector256.Create(sp[j0 + r]);
                        o0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), p, o0); o1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 8), p, o1);
                        o2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 16), p, o2); o3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 24), p, o3);
                        o4 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 32), p, o4); o5 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 40), p, o5);
                        o6 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 48), p, o6); o7 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 56), p, o7);
                    }
                }
            }
            o0.Store(op); o1.Store(op + 8); o2.Store(op + 16); o3.Store(op + 24);
            o4.Store(op + 32); o5.Store(op + 40); o6.Store(op + 48); o7.Store(op + 56);
        }
    }

    /// <summary>headDim 64 with Vector512: the query and the output accumulator stay in registers (4 vectors each).</summary>
    private static void Head64(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length, Span<float> scores, float scale)
    {
        int bs = cache.BlockSize, kvDim = cache.KvDim, off = kvHead * 64;
        fixed (float* qp = q)
        fixed (float* sp = scores)
        {
            var q0 = Vector512.Load(qp) * scale;
            var q1 = Vector512.Load(qp + 16) * scale;
            var q2 = Vector512.Load(qp + 32) * scale;
            var q3 = Vector512.Load(qp + 48) * scale;
            float max = float.NegativeInfinity;
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* kb = cache.Keys(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                    {
                        float* k = kb + r * kvDim + off;
                        var t = Vector512.FusedMultiplyAdd(q3, Vector512.Load(k + 48),
                                Vector512.FusedMultiplyAdd(q2, Vector512.Load(k + 32),
                                Vector512.FusedMultiplyAdd(q1, Vector512.Load(k + 16), q0 * Vector512.Load(k))));
                        float sc = Vector512.Sum(t);
                        sp[j0 + r] = sc;
                        if (sc > max) max = sc;
                    }
                }
            }
            var sc2 = scores[..length];
            System.Numerics.Tensors.TensorPrimitives.Subtract(sc2, max, sc2);
            System.Numerics.Tensors.TensorPrimitives.Exp(sc2, sc2);
            float inv = 1f / System.Numerics.Tensors.TensorPrimitives.Sum(sc2);
            Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* vb = cache.Values(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                    {
                        float* v = vb + r * kvDim + off;
                        var p = Vector512.Create(sp[j0 + r]);
                        o0 = Vector512.FusedMultiplyAdd(Vector512.Load(v), p, o0);
                        o1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 16), p, o1);
                        o2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 32), p, o2);
                        o3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 48), p, o3);
                    }
                }
            }
            fixed (float* op = output)
            {
                (o0 * inv).Store(op);
                (o1 * inv).Store(op + 16);
                (o2 * inv).Store(op + 32);
                (o3 * inv).Store(op + 48);
            }
        }
    }

    /// <summary>Copies the keys of positions [0, length) into <paramref name="keysT"/> as (kvHeads, blocks of 16,
    /// headDim, 16): 16 positions side by side per dimension, zero-padded, so that a query scores 16 keys per
    /// vector operation with no horizontal sums. Built once per layer and shared by every query of a prefill.</summary>
    public static void TransposeKeys(Span<float> keysT, IKvCache cache, int layer, int length, int kvHeads, int headDim)
    {
        int blocks = (length + 15) / 16, bs = cache.BlockSize, kvDim = cache.KvDim;
        keysT[..(kvHeads * blocks * headDim * 16)].Clear();
        for (int pos = 0; pos < length; pos++)
        {
            var k = cache.Keys(layer, pos / bs).Slice(pos % bs * kvDim, kvDim);
            int blk = pos / 16, j = pos % 16;
            for (int g = 0; g < kvHeads; g++)
            {
                int baseIndex = (g * blocks + blk) * headDim * 16 + j;
                for (int d = 0; d < headDim; d++) keysT[baseIndex + d * 16] = k[g * headDim + d];
            }
        }
    }

    /// <summary><see cref="Head"/> for Vector512 with the keys read from <see cref="TransposeKeys"/>'s layout
    /// (<paramref name="blocks"/> blocks of 16 were transposed).</summary>
    public static void HeadTransposed(Span<float> output, ReadOnlySpan<float> q, ReadOnlySpan<float> keysT, int blocks,
        IKvCache cache, int layer, int kvHead, int length, Span<float> scores)
    {
        int headDim = q.Length;
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* qp = q)
        fixed (float* kt = keysT)
        fixed (float* sp = scores)
        {
            float* head = kt + (long)kvHead * blocks * headDim * 16;
            int used = (length + 15) / 16;
            var max = Vector512.Create(float.NegativeInfinity);
            for (int blk = 0; blk < used; blk++)
            {
                float* kb = head + (long)blk * headDim * 16;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                int d = 0;
                for (; d + 4 <= headDim; d += 4)
                {
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Create(qp[d]), Vector512.Load(kb + d * 16), a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Create(qp[d + 1]), Vector512.Load(kb + d * 16 + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Create(qp[d + 2]), Vector512.Load(kb + d * 16 + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Create(qp[d + 3]), Vector512.Load(kb + d * 16 + 48), a3);
                }
                for (; d < headDim; d++) a0 = Vector512.FusedMultiplyAdd(Vector512.Create(qp[d]), Vector512.Load(kb + d * 16), a0);
                var sc = ((a0 + a1) + (a2 + a3)) * scale;
                if (blk == used - 1 && length % 16 != 0)
                {
                    // positions past the end of the causal window get -inf (they are zero padding)
                    var lane = Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                    sc = Vector512.ConditionalSelect(Vector512.LessThan(lane, Vector512.Create((float)(length % 16))), sc, Vector512.Create(float.NegativeInfinity));
                }
                sc.Store(sp + blk * 16);
                max = Vector512.Max(max, sc);
            }
            float m = Vector512.Max(max, max).ToScalar();
            for (int i = 0; i < 16; i++) m = Math.Max(m, max.GetElement(i));
            var sc2 = scores[..length];
            System.Numerics.Tensors.TensorPrimitives.Subtract(sc2, m, sc2);
            System.Numerics.Tensors.TensorPrimitives.Exp(sc2, sc2);
            float inv = 1f / System.Numerics.Tensors.TensorPrimitives.Sum(sc2);
            System.Numerics.Tensors.TensorPrimitives.Multiply(sc2, inv, sc2);
        }
        Values(output, scores, cache, layer, kvHead, length, SimdLevel.Vector512);
    }

    /// <summary>output = Σ_j p_j v_j over positions [0, length) (p already normalised).</summary>
    private static void Values(Span<float> output, ReadOnlySpan<float> p, IKvCache cache, int layer, int kvHead, int length, SimdLevel level)
    {
        int headDim = output.Length, bs = cache.BlockSize, kvDim = cache.KvDim;
        fixed (float* op = output)
        fixed (float* sp = p)
        {
            if (headDim == 64 && level == SimdLevel.Vector512)
            {
                int off = kvHead * 64;
                Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
                for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
                {
                    fixed (float* vb = cache.Values(layer, block))
                    {
                        int n = Math.Min(bs, length - j0);
                        for (int r = 0; r < n; r++)
                        {
                            float* v = vb + r * kvDim + off;
                            var pr = Vector512.Create(sp[j0 + r]);
                            o0 = Vector512.FusedMultiplyAdd(Vector512.Load(v), pr, o0);
                            o1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 16), pr, o1);
                            o2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 32), pr, o2);
                            o3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 48), pr, o3);
                        }
                    }
                }
                o0.Store(op); o1.Store(op + 16); o2.Store(op + 32); o3.Store(op + 48);
                return;
            }
            new Span<float>(op, headDim).Clear();
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* vb = cache.Values(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        VecOps.Axpy(op, vb + r * kvDim + kvHead * headDim, sp[j0 + r], headDim, level);
                }
            }
        }
    }

    /// <summary>Scalar twin: the same equation with explicit loops and double accumulation.</summary>
    public static void NaiveHead(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length)
    {
        int headDim = q.Length;
        var p = new double[length];
        for (int j = 0; j < length; j++)
        {
            var k = cache.Keys(layer, j / cache.BlockSize).Slice((j % cache.BlockSize) * cache.KvDim + kvHead * headDim, headDim);
            double s = 0;
            for (int i = 0; i < headDim; i++) s += (double)q[i] * k[i];
            p[j] = s / Math.Sqrt(headDim);
        }
        double max = p.Max(), sum = 0;
        for (int j = 0; j < length; j++) sum += p[j] = Math.Exp(p[j] - max);
        for (int i = 0; i < headDim; i++)
        {
            double o = 0;
            for (int j = 0; j < length; j++)
                o += p[j] / sum * cache.Values(layer, j / cache.BlockSize)[(j % cache.BlockSize) * cache.KvDim + kvHead * headDim + i];
            output[i] = (float)o;
        }
    }
}
