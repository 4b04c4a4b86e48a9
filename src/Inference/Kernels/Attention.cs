using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>Causal attention of one query head over a sequence's KV cache, read block by block
/// through <see cref="IKvCache"/> (so a paged pool can stand behind it).</summary>
public static unsafe partial class Attention
{
    /// <summary>output (headDim) = Σ_j softmax_j(q·k_j / sqrt(headDim)) v_j over positions j in [0, length).
    /// scores: scratch of at least <paramref name="length"/> floats. A bf16 cache is widened as it is read
    /// (<see cref="Bf16Kv"/>): bitwise the result over an f32 cache holding the same values.</summary>
    public static void Head(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead,
        int length, Span<float> scores, SimdLevel level)
    {
        if (cache.Format == KvCacheFormat.Bf16) Head<Bf16Kv>(output, q, cache, layer, kvHead, length, scores, level);
        else Head<F32Kv>(output, q, cache, layer, kvHead, length, scores, level);
    }

    private static void Head<T>(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead,
        int length, Span<float> scores, SimdLevel level) where T : struct, IKvElements
    {
        int headDim = q.Length;
        int bs = cache.BlockSize;
        int rowBytes = cache.KvDim * T.Size, offBytes = kvHead * headDim * T.Size;
        float scale = 1f / MathF.Sqrt(headDim);
        if (headDim == 64 && level == SimdLevel.Vector512)
        {
            Head64<T>(output, q, cache, layer, kvHead, length, scores, scale);
            return;
        }
        if (headDim == 64 && level == SimdLevel.Vector256)
        {
            Head64x256<T>(output, q, cache, layer, kvHead, length, scores, scale);
            return;
        }
        fixed (float* qp = q)
        fixed (float* op = output)
        fixed (float* sp = scores)
        {
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (byte* kb = KvBlocks.Keys(cache, layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        sp[j0 + r] = KvBlocks.Dot<T>(qp, kb + r * rowBytes + offBytes, headDim, level) * scale;
                }
            }
            Ops.Softmax(scores[..length]);
            new Span<float>(op, headDim).Clear();
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (byte* vb = KvBlocks.Values(cache, layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        KvBlocks.Axpy<T>(op, vb + r * rowBytes + offBytes, sp[j0 + r], headDim, level);
                }
            }
        }
    }

    /// <summary>headDim 64 at 256 bits: the query stays in 8 registers and four keys are scored at a time (four independent
    /// chains where one dot product is a chain of 8 dependent FMAs), the output accumulates in 8 registers instead of
    /// memory. Each score is <see cref="VecOps.Dot"/>'s operations in its order, times the scale, and each output element
    /// <see cref="VecOps.Axpy"/>'s from zero, so the result is bitwise the generic path's (which the prefix cache's exactness
    /// at this level rests on). The rows' addresses are gathered first (<see cref="KvBlocks.HeadRows"/>), so the loops make no
    /// calls (a call would send the 16 live vectors to the stack) and group keys across blocks (a pool page holds only a
    /// few positions: 3 for the SmolLM2 shape in f32).</summary>
    private static void Head64x256<T>(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length, Span<float> scores, float scale)
        where T : struct, IKvElements
    {
        byte** rows = KvBlocks.HeadRows(cache, layer, kvHead, 64, length);
        fixed (float* qp = q)
        fixed (float* sp = scores)
        fixed (float* op = output)
        {
            ScoreRange<T>(sp, qp, rows, 0, length, scale, length - 1, KvBlocks.PrefetchAhead);
            Ops.Softmax(scores[..length]);
            ValueRange<T>(op, sp, rows + length, 0, length, first: true, length - 1, KvBlocks.PrefetchAhead);
        }
    }

    /// <summary>headDim 64 with Vector512: the query and the output accumulator stay in registers (4 vectors each).</summary>
    private static void Head64<T>(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length, Span<float> scores, float scale)
        where T : struct, IKvElements
    {
        // the rows' addresses first, so the loops below make no calls (see Head64x256)
        byte** rows = KvBlocks.HeadRows(cache, layer, kvHead, 64, length);
        fixed (float* qp = q)
        fixed (float* sp = scores)
        fixed (float* op = output)
        {
            Span<float> maxes = stackalloc float[1];
            ScoreGroup<T>(maxes, qp, 1, rows, length, sp, length, scale);   // a group of one: bitwise what the head gets in a group
            float max = maxes[0];
            var sc2 = scores[..length];
            System.Numerics.Tensors.TensorPrimitives.Subtract(sc2, max, sc2);
            System.Numerics.Tensors.TensorPrimitives.Exp(sc2, sc2);
            float inv = 1f / System.Numerics.Tensors.TensorPrimitives.Sum(sc2);
            Values64<T>(op, sp, rows + length, length, inv);
        }
    }

    /// <summary>o = inv · Σ_j p[j] v_j over the value rows at <paramref name="values"/>[j], in the order of j.</summary>
    private static void Values64<T>(float* op, float* p, byte** values, int length, float inv) where T : struct, IKvElements
    {
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (int j = 0; j < length; j++)
        {
            KvBlocks.Prefetch64<T>(values, j + KvBlocks.PrefetchAhead, length - 1);
            byte* v = values[j];
            var pj = Vector512.Create(p[j]);
            o0 = Vector512.FusedMultiplyAdd(T.Load512(v, 0), pj, o0);
            o1 = Vector512.FusedMultiplyAdd(T.Load512(v, 16), pj, o1);
            o2 = Vector512.FusedMultiplyAdd(T.Load512(v, 32), pj, o2);
            o3 = Vector512.FusedMultiplyAdd(T.Load512(v, 48), pj, o3);
        }
        (o0 * inv).Store(op);
        (o1 * inv).Store(op + 16);
        (o2 * inv).Store(op + 32);
        (o3 * inv).Store(op + 48);
    }

    /// <summary>Copies the keys of positions [0, length) into <paramref name="keysT"/> as (kvHeads, blocks of 16,
    /// headDim, 16): 16 positions side by side per dimension, zero-padded, so that a query scores 16 keys per
    /// vector operation with no horizontal sums. Built once per layer and shared by every query of a prefill. Keys of a
    /// bf16 cache are widened (exactly) as they are copied.</summary>
    public static void TransposeKeys(Span<float> keysT, IKvCache cache, int layer, int length, int kvHeads, int headDim)
    {
        if (cache.Format == KvCacheFormat.Bf16) TransposeKeys<Bf16Kv>(keysT, cache, layer, length, kvHeads, headDim);
        else TransposeKeys<F32Kv>(keysT, cache, layer, length, kvHeads, headDim);
    }

    private static void TransposeKeys<T>(Span<float> keysT, IKvCache cache, int layer, int length, int kvHeads, int headDim)
        where T : struct, IKvElements
    {
        int blocks = (length + 15) / 16, bs = cache.BlockSize, kvDim = cache.KvDim;
        keysT[..(kvHeads * blocks * headDim * 16)].Clear();
        for (int pos = 0; pos < length; pos++)
        {
            fixed (byte* kb = KvBlocks.Keys(cache, layer, pos / bs))
            {
                byte* k = kb + pos % bs * kvDim * T.Size;
                int blk = pos / 16, j = pos % 16;
                for (int g = 0; g < kvHeads; g++)
                {
                    int baseIndex = (g * blocks + blk) * headDim * 16 + j;
                    for (int d = 0; d < headDim; d++) keysT[baseIndex + d * 16] = T.Load(k, g * headDim + d);
                }
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
                    sc = Vector512.ConditionalSelect(LanesBelow(length % 16), sc, Vector512.Create(float.NegativeInfinity));
                }
                sc.Store(sp + blk * 16);
            }
            NormalizeTransposed(scores[..(used * 16)], length);
        }
        Values(output, scores, cache, layer, kvHead, length, SimdLevel.Vector512);
    }

    /// <summary>Softmax of a transposed-keys score row in place: <paramref name="blockScores"/> holds whole blocks of 16
    /// (positions past <paramref name="length"/> at -inf); the first <paramref name="length"/> become probabilities.</summary>
    private static void NormalizeTransposed(Span<float> blockScores, int length)
    {
        float m = System.Numerics.Tensors.TensorPrimitives.Max(blockScores);
        var sc = blockScores[..length];
        System.Numerics.Tensors.TensorPrimitives.Subtract(sc, m, sc);
        System.Numerics.Tensors.TensorPrimitives.Exp(sc, sc);
        float inv = 1f / System.Numerics.Tensors.TensorPrimitives.Sum(sc);
        System.Numerics.Tensors.TensorPrimitives.Multiply(sc, inv, sc);
    }

    /// <summary>output = Σ_j p_j v_j over positions [0, length) (p already normalised).</summary>
    private static void Values(Span<float> output, ReadOnlySpan<float> p, IKvCache cache, int layer, int kvHead, int length, SimdLevel level)
    {
        if (cache.Format == KvCacheFormat.Bf16) Values<Bf16Kv>(output, p, cache, layer, kvHead, length, level);
        else Values<F32Kv>(output, p, cache, layer, kvHead, length, level);
    }

    private static void Values<T>(Span<float> output, ReadOnlySpan<float> p, IKvCache cache, int layer, int kvHead, int length, SimdLevel level)
        where T : struct, IKvElements
    {
        int headDim = output.Length, bs = cache.BlockSize, rowBytes = cache.KvDim * T.Size;
        fixed (float* op = output)
        fixed (float* sp = p)
        {
            if (headDim == 64 && level == SimdLevel.Vector512)
            {
                int off = kvHead * 64 * T.Size;
                Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
                for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
                {
                    fixed (byte* vb = KvBlocks.Values(cache, layer, block))
                    {
                        int n = Math.Min(bs, length - j0);
                        for (int r = 0; r < n; r++)
                        {
                            byte* v = vb + r * rowBytes + off;
                            var pr = Vector512.Create(sp[j0 + r]);
                            o0 = Vector512.FusedMultiplyAdd(T.Load512(v, 0), pr, o0);
                            o1 = Vector512.FusedMultiplyAdd(T.Load512(v, 16), pr, o1);
                            o2 = Vector512.FusedMultiplyAdd(T.Load512(v, 32), pr, o2);
                            o3 = Vector512.FusedMultiplyAdd(T.Load512(v, 48), pr, o3);
                        }
                    }
                }
                o0.Store(op); o1.Store(op + 16); o2.Store(op + 32); o3.Store(op + 48);
                return;
            }
            new Span<float>(op, headDim).Clear();
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (byte* vb = KvBlocks.Values(cache, layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        KvBlocks.Axpy<T>(op, vb + r * rowBytes + kvHead * headDim * T.Size, sp[j0 + r], headDim, level);
                }
            }
        }
    }

    /// <summary>Scalar twin: the same equation with explicit loops and double accumulation (elements of a bf16 cache
    /// widened one by one).</summary>
    public static void NaiveHead(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length)
    {
        int headDim = q.Length;
        var p = new double[length];
        for (int j = 0; j < length; j++)
        {
            double s = 0;
            for (int i = 0; i < headDim; i++) s += (double)q[i] * cache.KeyAt(layer, j, kvHead * headDim + i);
            p[j] = s / Math.Sqrt(headDim);
        }
        double max = p.Max(), sum = 0;
        for (int j = 0; j < length; j++) sum += p[j] = Math.Exp(p[j] - max);
        for (int i = 0; i < headDim; i++)
        {
            double o = 0;
            for (int j = 0; j < length; j++)
                o += p[j] / sum * cache.ValueAt(layer, j, kvHead * headDim + i);
            output[i] = (float)o;
        }
    }
}
