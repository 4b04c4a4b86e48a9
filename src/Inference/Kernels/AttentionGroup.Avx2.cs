using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

public static unsafe partial class Attention
{
    /// <summary>Positions per block of <see cref="Queries64x256"/>: a block's key rows (8 KiB in f32) stay in the core's
    /// first-level cache while every query of the call scores them, and so do its value rows.</summary>
    public const int QueryBlockPositions = 32;

    /// <summary>Queries of one KV head at 256 bits with heads of 64 — the query heads of a KV group, for one token or for a
    /// few consecutive tokens of one sequence — computed block of positions by block of positions, so each key and value
    /// row comes from the second-level cache (or memory) once per call instead of once per query. A head's row (256 bytes
    /// in f32) takes 8 cycles to arrive from the second-level cache of a Zen 3 core and its 8 fused multiply-adds 4:
    /// query after query over the whole context, the kernel waited on that cache.
    /// Each query's arithmetic is <see cref="Head64x256"/>'s (every score one chain of 8 fused multiply-adds from zero,
    /// its sum times the scale; <see cref="Ops.Softmax"/> over the query's row; every output element fused multiply-adds
    /// from zero in the order of positions), so every output is bitwise <see cref="Head"/>'s at 256 bits for that query
    /// alone, and so the generic path's.</summary>
    /// <param name="q">m query pointers (64 floats each).</param>
    /// <param name="output">m output pointers (64 floats each).</param>
    /// <param name="lengths">m causal lengths: query i attends to positions [0, lengths[i]).</param>
    /// <param name="scores">m score rows of <paramref name="rowLength"/> floats, rowLength at least every length.</param>
    public static void Queries64x256(float** q, float** output, int* lengths, int m, IKvCache cache, int layer, int kvHead,
        float* scores, int rowLength)
    {
        int length = 0;
        for (int i = 0; i < m; i++) length = Math.Max(length, lengths[i]);
        if (length > rowLength) throw new ArgumentException("attention score rows too short");
        if (length == 0) return;
        float scale = 1f / MathF.Sqrt(64);
        byte** rows = KvBlocks.HeadRows(cache, layer, kvHead, 64, length);
        if (cache.Format == KvCacheFormat.Bf16) Queries64x256<Bf16Kv>(q, output, lengths, m, rows, length, scores, rowLength, scale);
        else Queries64x256<F32Kv>(q, output, lengths, m, rows, length, scores, rowLength, scale);
    }

    private static void Queries64x256<T>(float** q, float** output, int* lengths, int m, byte** rows, int length,
        float* scores, int rowLength, float scale) where T : struct, IKvElements
    {
        const int block = QueryBlockPositions;
        for (int j0 = 0; j0 < length; j0 += block)
        {
            int j1 = Math.Min(j0 + block, length);
            // the first query asks for the next block's key rows while it scores this one
            for (int i = 0; i < m; i++)
                if (lengths[i] > j0) ScoreRange<T>(scores + (long)i * rowLength, q[i], rows, j0, Math.Min(j1, lengths[i]), scale, i == 0 ? length - 1 : -1, block);
        }
        for (int i = 0; i < m; i++) Ops.Softmax(new Span<float>(scores + (long)i * rowLength, lengths[i]));
        byte** values = rows + length;
        for (int j0 = 0; j0 < length; j0 += block)
        {
            int j1 = Math.Min(j0 + block, length);
            for (int i = 0; i < m; i++)
                if (lengths[i] > j0) ValueRange<T>(output[i], scores + (long)i * rowLength, values, j0, Math.Min(j1, lengths[i]), j0 == 0, i == 0 ? length - 1 : -1, block);
        }
    }

    /// <summary>s[j] = (q · k_j) · scale for j in [j0, j1) at 256 bits: the query in 8 registers, four keys at a time (four
    /// independent chains where one dot product is a chain of 8 dependent fused multiply-adds), each score
    /// <see cref="VecOps.Dot"/>'s operations in its order times the scale. last ≥ 0: also asks for the key rows
    /// <paramref name="ahead"/> positions ahead (clamped to row <paramref name="last"/>).</summary>
    private static void ScoreRange<T>(float* sp, float* qp, byte** keys, int j0, int j1, float scale, int last, int ahead) where T : struct, IKvElements
    {
        var q0 = Vector256.Load(qp); var q1 = Vector256.Load(qp + 8); var q2 = Vector256.Load(qp + 16); var q3 = Vector256.Load(qp + 24);
        var q4 = Vector256.Load(qp + 32); var q5 = Vector256.Load(qp + 40); var q6 = Vector256.Load(qp + 48); var q7 = Vector256.Load(qp + 56);
        int j = j0;
        for (; j + 4 <= j1; j += 4)
        {
            if (last >= 0)
            {
                int next = j + ahead;
                KvBlocks.Prefetch64<T>(keys, next, last); KvBlocks.Prefetch64<T>(keys, next + 1, last);
                KvBlocks.Prefetch64<T>(keys, next + 2, last); KvBlocks.Prefetch64<T>(keys, next + 3, last);
            }
            byte* k0 = keys[j], k1 = keys[j + 1], k2 = keys[j + 2], k3 = keys[j + 3];
            Vector256<float> c0 = Vector256<float>.Zero, c1 = Vector256<float>.Zero, c2 = Vector256<float>.Zero, c3 = Vector256<float>.Zero;
            c0 = Vector256.FusedMultiplyAdd(q0, T.Load256(k0, 0), c0); c1 = Vector256.FusedMultiplyAdd(q0, T.Load256(k1, 0), c1);
            c2 = Vector256.FusedMultiplyAdd(q0, T.Load256(k2, 0), c2); c3 = Vector256.FusedMultiplyAdd(q0, T.Load256(k3, 0), c3);
            c0 = Vector256.FusedMultiplyAdd(q1, T.Load256(k0, 8), c0); c1 = Vector256.FusedMultiplyAdd(q1, T.Load256(k1, 8), c1);
            c2 = Vector256.FusedMultiplyAdd(q1, T.Load256(k2, 8), c2); c3 = Vector256.FusedMultiplyAdd(q1, T.Load256(k3, 8), c3);
            c0 = Vector256.FusedMultiplyAdd(q2, T.Load256(k0, 16), c0); c1 = Vector256.FusedMultiplyAdd(q2, T.Load256(k1, 16), c1);
            c2 = Vector256.FusedMultiplyAdd(q2, T.Load256(k2, 16), c2); c3 = Vector256.FusedMultiplyAdd(q2, T.Load256(k3, 16), c3);
            c0 = Vector256.FusedMultiplyAdd(q3, T.Load256(k0, 24), c0); c1 = Vector256.FusedMultiplyAdd(q3, T.Load256(k1, 24), c1);
            c2 = Vector256.FusedMultiplyAdd(q3, T.Load256(k2, 24), c2); c3 = Vector256.FusedMultiplyAdd(q3, T.Load256(k3, 24), c3);
            c0 = Vector256.FusedMultiplyAdd(q4, T.Load256(k0, 32), c0); c1 = Vector256.FusedMultiplyAdd(q4, T.Load256(k1, 32), c1);
            c2 = Vector256.FusedMultiplyAdd(q4, T.Load256(k2, 32), c2); c3 = Vector256.FusedMultiplyAdd(q4, T.Load256(k3, 32), c3);
            c0 = Vector256.FusedMultiplyAdd(q5, T.Load256(k0, 40), c0); c1 = Vector256.FusedMultiplyAdd(q5, T.Load256(k1, 40), c1);
            c2 = Vector256.FusedMultiplyAdd(q5, T.Load256(k2, 40), c2); c3 = Vector256.FusedMultiplyAdd(q5, T.Load256(k3, 40), c3);
            c0 = Vector256.FusedMultiplyAdd(q6, T.Load256(k0, 48), c0); c1 = Vector256.FusedMultiplyAdd(q6, T.Load256(k1, 48), c1);
            c2 = Vector256.FusedMultiplyAdd(q6, T.Load256(k2, 48), c2); c3 = Vector256.FusedMultiplyAdd(q6, T.Load256(k3, 48), c3);
            c0 = Vector256.FusedMultiplyAdd(q7, T.Load256(k0, 56), c0); c1 = Vector256.FusedMultiplyAdd(q7, T.Load256(k1, 56), c1);
            c2 = Vector256.FusedMultiplyAdd(q7, T.Load256(k2, 56), c2); c3 = Vector256.FusedMultiplyAdd(q7, T.Load256(k3, 56), c3);
            (Sum4(c0, c1, c2, c3) * scale).Store(sp + j);
        }
        for (; j < j1; j++)
        {
            byte* k = keys[j];
            var c = Vector256<float>.Zero;
            c = Vector256.FusedMultiplyAdd(q0, T.Load256(k, 0), c); c = Vector256.FusedMultiplyAdd(q1, T.Load256(k, 8), c);
            c = Vector256.FusedMultiplyAdd(q2, T.Load256(k, 16), c); c = Vector256.FusedMultiplyAdd(q3, T.Load256(k, 24), c);
            c = Vector256.FusedMultiplyAdd(q4, T.Load256(k, 32), c); c = Vector256.FusedMultiplyAdd(q5, T.Load256(k, 40), c);
            c = Vector256.FusedMultiplyAdd(q6, T.Load256(k, 48), c); c = Vector256.FusedMultiplyAdd(q7, T.Load256(k, 56), c);
            sp[j] = Vector256.Sum(c) * scale;
        }
    }

    /// <summary>(Vector256.Sum(c0), ..., Vector256.Sum(c3)) bit for bit, in 6 vector operations instead of 44: the sum
    /// of a vector's 8 lanes is ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), and two rounds of horizontal adds (pairs
    /// of neighbours within each 128-bit half, of four vectors at once) and one add of the halves form exactly those sums
    /// (addition of two floats is commutative, so the order inside a pair does not matter).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sum4(Vector256<float> c0, Vector256<float> c1, Vector256<float> c2, Vector256<float> c3)
    {
        if (!Avx.IsSupported) return Vector128.Create(Vector256.Sum(c0), Vector256.Sum(c1), Vector256.Sum(c2), Vector256.Sum(c3));
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(c0, c1), Avx.HorizontalAdd(c2, c3));
        return h.GetLower() + h.GetUpper();
    }

    /// <summary>o (+)= Σ_j p[j] v_j for j in [j0, j1) in the order of j, the output in 8 registers (each element
    /// <see cref="VecOps.Axpy"/>'s operations), from zero when <paramref name="first"/>, else from the partial sums in o.
    /// last ≥ 0: also asks for the value rows <paramref name="ahead"/> positions ahead.</summary>
    private static void ValueRange<T>(float* op, float* p, byte** values, int j0, int j1, bool first, int last, int ahead) where T : struct, IKvElements
    {
        Vector256<float> o0, o1, o2, o3, o4, o5, o6, o7;
        if (first)
        {
            o0 = o1 = o2 = o3 = o4 = o5 = o6 = o7 = Vector256<float>.Zero;
        }
        else
        {
            o0 = Vector256.Load(op); o1 = Vector256.Load(op + 8); o2 = Vector256.Load(op + 16); o3 = Vector256.Load(op + 24);
            o4 = Vector256.Load(op + 32); o5 = Vector256.Load(op + 40); o6 = Vector256.Load(op + 48); o7 = Vector256.Load(op + 56);
        }
        for (int j = j0; j < j1; j++)
        {
            if (last >= 0) KvBlocks.Prefetch64<T>(values, j + ahead, last);
            byte* v = values[j];
            var pj = Vector256.Create(p[j]);
            o0 = Vector256.FusedMultiplyAdd(T.Load256(v, 0), pj, o0); o1 = Vector256.FusedMultiplyAdd(T.Load256(v, 8), pj, o1);
            o2 = Vector256.FusedMultiplyAdd(T.Load256(v, 16), pj, o2); o3 = Vector256.FusedMultiplyAdd(T.Load256(v, 24), pj, o3);
            o4 = Vector256.FusedMultiplyAdd(T.Load256(v, 32), pj, o4); o5 = Vector256.FusedMultiplyAdd(T.Load256(v, 40), pj, o5);
            o6 = Vector256.FusedMultiplyAdd(T.Load256(v, 48), pj, o6); o7 = Vector256.FusedMultiplyAdd(T.Load256(v, 56), pj, o7);
        }
        o0.Store(op); o1.Store(op + 8); o2.Store(op + 16); o3.Store(op + 24);
        o4.Store(op + 32); o5.Store(op + 40); o6.Store(op + 48); o7.Store(op + 56);
    }
}
