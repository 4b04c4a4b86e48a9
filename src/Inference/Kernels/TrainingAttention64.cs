using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>The AVX-512 path of <see cref="TrainingAttention"/> for heads of 64: keys and values transposed once per
/// call ((kvHeads, 64, T), per-thread scratch) so a row's scores (and, backward, its dO·V products) are computed 16 keys
/// per vector with four independent chains; softmax by vector primitives; a head's outputs, dq, dk and dv accumulated
/// in four registers (64 floats) over the keys or queries in ascending order. The backward pass keeps each head's score
/// gradients (T, T) and sums dk and dv per key over the queries that see it, in query order. Parallel over heads; no
/// sum depends on the number of cores.</summary>
internal static unsafe class TrainingAttention64
{
    private const int HD = 64;

    [ThreadStatic] private static float[]? _t;    // (kvHeads, 64, tp) keys or values transposed (tp: T rounded up to 64, + 64
                                                 // so a block of 64 keys never reads past the buffer), pinned

    private static float* Pinned(ref float[]? buffer, long length)
    {
        if (buffer == null || buffer.Length < length) buffer = GC.AllocateArray<float>((int)Math.Max(length, 4096), pinned: true);
        fixed (float* p = buffer) return p;   // pinned: the address stays valid
    }

    /// <summary>(kvHeads, 64, tp) from (T, kvHeads·64), zero past T.</summary>
    private static float* Transposed(ReadOnlySpan<float> src, int T, int tp, int kvHeads)
    {
        float* d = Pinned(ref _t, (long)kvHeads * HD * tp);
        int kvDim = kvHeads * HD;
        for (int g = 0; g < kvHeads; g++)
            for (int i = 0; i < HD; i++)
            {
                float* row = d + ((long)g * HD + i) * tp;
                for (int j = 0; j < T; j++) row[j] = src[j * kvDim + g * HD + i];
                for (int j = T; j < tp; j++) row[j] = 0;
            }
        return d;
    }

    /// <summary>out[j] = scale · Σ_i a[i] · bt[i, j] for j in [j0, j1] (bt: (64, tp)); four 16-key blocks at a time.</summary>
    private static void Products(float* output, float* a, float* bt, int tp, int j0, int j1, float scale)
    {
        var sc = Vector512.Create(scale);
        float* tmp = stackalloc float[16];
        for (int j = j0; j <= j1; j += 64)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int i = 0; i < HD; i++)
            {
                var ai = Vector512.Create(a[i]);
                float* b = bt + (long)i * tp + j;
                s0 = Vector512.FusedMultiplyAdd(ai, Vector512.Load(b), s0);
                s1 = Vector512.FusedMultiplyAdd(ai, Vector512.Load(b + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(ai, Vector512.Load(b + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(ai, Vector512.Load(b + 48), s3);
            }
            Put(output, j, j1, s0 * sc, tmp);
            Put(output, j + 16, j1, s1 * sc, tmp);
            Put(output, j + 32, j1, s2 * sc, tmp);
            Put(output, j + 48, j1, s3 * sc, tmp);
        }
    }

    /// <summary>Stores the 16 values for j.. up to j1 (inclusive).</summary>
    private static void Put(float* output, int j, int j1, Vector512<float> v, float* tmp)
    {
        if (j > j1) return;
        if (j + 16 <= j1 + 1) { v.Store(output + j); return; }
        v.Store(tmp);
        for (int i = 0; j + i <= j1; i++) output[j + i] = tmp[i];
    }

    /// <summary>Rows [t0, t1) (see <see cref="TrainingAttention.Forward"/>): only the keys before t1 are read.</summary>
    public static void Forward(Span<float> output, Span<float> probs, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<int> start, int T, int heads, int kvHeads, int t0, int t1)
    {
        int qDim = heads * HD, kvDim = kvHeads * HD, groups = heads / kvHeads, tp = ((T + 63) & ~63) + 64;
        float scale = 1f / MathF.Sqrt(HD);
        nint kt = (nint)Transposed(k, t1, tp, kvHeads);
        fixed (float* op = output) fixed (float* pp = probs) fixed (float* qp = q) fixed (float* vp = v) fixed (int* sp = start)
        {
            nint oa = (nint)op, pa = (nint)pp, qa = (nint)qp, va = (nint)vp, sa = (nint)sp;
            int rowStart = t0, rowEnd = t1;
            void Head(int h)
            {
                int g = h / groups;
                float* ktg = (float*)kt + (long)g * HD * tp, P = (float*)pa + (long)h * T * T, V = (float*)va + g * HD;
                int* st = (int*)sa;
                for (int t = rowStart; t < rowEnd; t++)
                {
                    float* row = P + (long)t * T;
                    int s0 = st[t];
                    Products(row, (float*)qa + (long)t * qDim + h * HD, ktg, tp, s0, t, scale);
                    var span = new Span<float>(row + s0, t - s0 + 1);
                    float max = TensorPrimitives.Max(span);
                    TensorPrimitives.Subtract(span, max, span);
                    TensorPrimitives.Exp(span, span);
                    float sum = TensorPrimitives.Sum(span);
                    TensorPrimitives.Multiply(span, 1f / sum, span);
                    Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
                    for (int j = s0; j <= t; j++)
                    {
                        var pj = Vector512.Create(row[j]);
                        float* vj = V + (long)j * kvDim;
                        o0 = Vector512.FusedMultiplyAdd(Vector512.Load(vj), pj, o0);
                        o1 = Vector512.FusedMultiplyAdd(Vector512.Load(vj + 16), pj, o1);
                        o2 = Vector512.FusedMultiplyAdd(Vector512.Load(vj + 32), pj, o2);
                        o3 = Vector512.FusedMultiplyAdd(Vector512.Load(vj + 48), pj, o3);
                    }
                    float* ot = (float*)oa + (long)t * qDim + h * HD;
                    o0.Store(ot); o1.Store(ot + 16); o2.Store(ot + 32); o3.Store(ot + 48);
                }
            }
            // a few rows (a chunk of a chunked forward): on this thread, as a worker would compute them
            if ((long)(rowEnd - rowStart) * rowEnd * heads * 64 < TrainingAttention.SerialWork) for (int h = 0; h < heads; h++) Head(h);
            else Parallel.For(0, heads, Head);
        }
    }

    /// <summary>See <see cref="TrainingAttention.Backward"/>; dkHeads, dvHeads: (heads, T, 64) scratch. The probabilities
    /// are overwritten with the score gradients (dv is taken from them first), so no (heads, T, T) scratch is needed.</summary>
    public static void Backward(Span<float> dq, Span<float> dk, Span<float> dv, ReadOnlySpan<float> dOut, Span<float> probs,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> start, int T, int heads, int kvHeads,
        Span<float> dkHeads, Span<float> dvHeads)
    {
        int qDim = heads * HD, kvDim = kvHeads * HD, groups = heads / kvHeads, tp = ((T + 63) & ~63) + 64;
        float scale = 1f / MathF.Sqrt(HD);
        nint vt = (nint)Transposed(v, T, tp, kvHeads);
        fixed (float* dqp = dq) fixed (float* dop = dOut) fixed (float* pp = probs) fixed (float* qp = q) fixed (float* kp = k) fixed (int* sp = start)
        fixed (float* dkh = dkHeads) fixed (float* dvh = dvHeads)
        {
            nint dqa = (nint)dqp, doa = (nint)dop, pa = (nint)pp, qa = (nint)qp, ka = (nint)kp, sa = (nint)sp, dkha = (nint)dkh, dvha = (nint)dvh;
            Parallel.For(0, heads, h =>
            {
                int g = h / groups;
                float* vtg = (float*)vt + (long)g * HD * tp, P = (float*)pa + (long)h * T * T;
                float* K = (float*)ka + g * HD, dO = (float*)doa + h * HD, Q = (float*)qa + h * HD;
                float* dKh = (float*)dkha + (long)h * T * HD, dVh = (float*)dvha + (long)h * T * HD;
                int* st = (int*)sa;
                // dv_j = Σ_t p[t, j] dO_t over the queries t ≥ j of its example, t ascending
                for (int j = 0; j < T; j++)
                {
                    Vector512<float> v0 = default, v1 = default, v2 = default, v3 = default;
                    for (int t = j; t < T && st[t] <= j; t++)
                    {
                        var pj = Vector512.Create(P[(long)t * T + j]);
                        float* dot = dO + (long)t * qDim;
                        v0 = Vector512.FusedMultiplyAdd(Vector512.Load(dot), pj, v0);
                        v1 = Vector512.FusedMultiplyAdd(Vector512.Load(dot + 16), pj, v1);
                        v2 = Vector512.FusedMultiplyAdd(Vector512.Load(dot + 32), pj, v2);
                        v3 = Vector512.FusedMultiplyAdd(Vector512.Load(dot + 48), pj, v3);
                    }
                    float* dvj = dVh + (long)j * HD;
                    v0.Store(dvj); v1.Store(dvj + 16); v2.Store(dvj + 32); v3.Store(dvj + 48);
                }
                for (int t = 0; t < T; t++)
                {
                    float* row = P + (long)t * T, dot = dO + (long)t * qDim;
                    int s0 = st[t], len = t - s0 + 1;
                    // dp_j = dO_t · V_j, then ds_j = p_j (dp_j − Σ p·dp) · scale, written over p_j
                    var pSpan = new Span<float>(row + s0, len);
                    float* tmp = Scratch(T);
                    Products(tmp, dot, vtg, tp, s0, t, 1f);
                    var dpSpan = new Span<float>(tmp + s0, len);
                    float d = TensorPrimitives.Dot(pSpan, dpSpan);
                    TensorPrimitives.Subtract(dpSpan, d, dpSpan);
                    TensorPrimitives.Multiply(dpSpan, pSpan, pSpan);
                    TensorPrimitives.Multiply(pSpan, scale, pSpan);
                    Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                    for (int j = s0; j <= t; j++)
                    {
                        var sj = Vector512.Create(row[j]);
                        float* kj = K + (long)j * kvDim;
                        a0 = Vector512.FusedMultiplyAdd(Vector512.Load(kj), sj, a0);
                        a1 = Vector512.FusedMultiplyAdd(Vector512.Load(kj + 16), sj, a1);
                        a2 = Vector512.FusedMultiplyAdd(Vector512.Load(kj + 32), sj, a2);
                        a3 = Vector512.FusedMultiplyAdd(Vector512.Load(kj + 48), sj, a3);
                    }
                    float* dqt = (float*)dqa + (long)t * qDim + h * HD;
                    a0.Store(dqt); a1.Store(dqt + 16); a2.Store(dqt + 32); a3.Store(dqt + 48);
                }
                // dk_j = Σ_t ds[t, j] q_t, t ascending
                for (int j = 0; j < T; j++)
                {
                    Vector512<float> k0 = default, k1 = default, k2 = default, k3 = default;
                    for (int t = j; t < T && st[t] <= j; t++)
                    {
                        var sj = Vector512.Create(P[(long)t * T + j]);
                        float* qt = Q + (long)t * qDim;
                        k0 = Vector512.FusedMultiplyAdd(Vector512.Load(qt), sj, k0);
                        k1 = Vector512.FusedMultiplyAdd(Vector512.Load(qt + 16), sj, k1);
                        k2 = Vector512.FusedMultiplyAdd(Vector512.Load(qt + 32), sj, k2);
                        k3 = Vector512.FusedMultiplyAdd(Vector512.Load(qt + 48), sj, k3);
                    }
                    float* dkj = dKh + (long)j * HD;
                    k0.Store(dkj); k1.Store(dkj + 16); k2.Store(dkj + 32); k3.Store(dkj + 48);
                }
            });
            TrainingAttention.SumGroups(dk, dkHeads, T, heads, kvHeads, HD);
            TrainingAttention.SumGroups(dv, dvHeads, T, heads, kvHeads, HD);
        }
    }

    [ThreadStatic] private static float[]? _row;   // (T) one row's dO·V products, per worker thread, pinned

    private static float* Scratch(int T) => Pinned(ref _row, T + 64);
}
