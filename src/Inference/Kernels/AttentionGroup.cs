using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

public static unsafe partial class Attention
{
    /// <summary>Most query heads computed together: their queries (scoring) or output accumulators (values) stay in
    /// registers, 4 vectors per head.</summary>
    public const int GroupHeads = 4;

    /// <summary>All query heads of one KV head (grouped-query attention) with headDim 64 and Vector512: each key and
    /// value row is loaded once for up to <see cref="GroupHeads"/> query heads, instead of once per head. Every head's
    /// arithmetic is <see cref="Head"/>'s (the same fused multiply-adds and sums in the same order), so each output is
    /// bitwise what <see cref="Head"/> gives for that head alone; a bf16 cache is widened as it is read, as there.</summary>
    /// <param name="output">(heads, 64) the group's outputs.</param>
    /// <param name="q">(heads, 64) the group's queries.</param>
    /// <param name="scores">(heads, rowLength) one score row per head, rowLength at least <paramref name="length"/>.</param>
    public static void Group64(Span<float> output, ReadOnlySpan<float> q, int heads, IKvCache cache, int layer, int kvHead,
        int length, Span<float> scores, int rowLength)
    {
        if (q.Length < heads * 64 || output.Length < heads * 64 || rowLength < length || scores.Length < heads * rowLength)
            throw new ArgumentException("grouped attention buffers too small");
        float scale = 1f / MathF.Sqrt(64);
        Span<float> max = stackalloc float[GroupHeads];
        Span<float> inv = stackalloc float[GroupHeads];
        // the rows' addresses first, so the loops below make no calls (see Head64x256): keys at [0, length), values after
        byte** rows = KvBlocks.HeadRows(cache, layer, kvHead, 64, length);
        fixed (float* qp = q)
        fixed (float* op = output)
        fixed (float* sp = scores)
        {
            for (int h = 0; h < heads; h += GroupHeads)
            {
                int m = Math.Min(GroupHeads, heads - h);
                if (cache.Format == KvCacheFormat.Bf16) ScoreGroup<Bf16Kv>(max, qp + h * 64, m, rows, length, sp + (long)h * rowLength, rowLength, scale);
                else ScoreGroup<F32Kv>(max, qp + h * 64, m, rows, length, sp + (long)h * rowLength, rowLength, scale);
                for (int i = 0; i < m; i++)
                {
                    var row = new Span<float>(sp + (long)(h + i) * rowLength, length);
                    TensorPrimitives.Subtract(row, max[i], row);
                    TensorPrimitives.Exp(row, row);
                    inv[i] = 1f / TensorPrimitives.Sum(row);
                }
                if (cache.Format == KvCacheFormat.Bf16) ValueGroup<Bf16Kv>(op + h * 64, inv, m, rows + length, length, sp + (long)h * rowLength, rowLength);
                else ValueGroup<F32Kv>(op + h * 64, inv, m, rows + length, length, sp + (long)h * rowLength, rowLength);
            }
        }
    }

    /// <summary>Scores of m ≤ 4 heads: row i of s gets q_i · k_j · scale for every position j (key row at keys[j]); max[i]
    /// its largest.</summary>
    private static void ScoreGroup<T>(Span<float> max, float* q, int m, byte** keys, int length, float* s, int rowLength, float scale)
        where T : struct, IKvElements
    {
        // pointers of unused heads repeat the last one's (never read or written past m)
        float* qa = q, qb = q + Math.Min(1, m - 1) * 64, qc = q + Math.Min(2, m - 1) * 64, qd = q + Math.Min(3, m - 1) * 64;
        Vector512<float> a0 = Vector512.Load(qa) * scale, a1 = Vector512.Load(qa + 16) * scale, a2 = Vector512.Load(qa + 32) * scale, a3 = Vector512.Load(qa + 48) * scale;
        Vector512<float> b0 = Vector512.Load(qb) * scale, b1 = Vector512.Load(qb + 16) * scale, b2 = Vector512.Load(qb + 32) * scale, b3 = Vector512.Load(qb + 48) * scale;
        Vector512<float> c0 = Vector512.Load(qc) * scale, c1 = Vector512.Load(qc + 16) * scale, c2 = Vector512.Load(qc + 32) * scale, c3 = Vector512.Load(qc + 48) * scale;
        Vector512<float> d0 = Vector512.Load(qd) * scale, d1 = Vector512.Load(qd + 16) * scale, d2 = Vector512.Load(qd + 32) * scale, d3 = Vector512.Load(qd + 48) * scale;
        float ma = float.NegativeInfinity, mb = ma, mc = ma, md = ma;
        float* sa = s, sb = s + Math.Min(1, m - 1) * rowLength, sc = s + Math.Min(2, m - 1) * rowLength, sd = s + Math.Min(3, m - 1) * rowLength;
        for (int j = 0; j < length; j++)
        {
            byte* k = keys[j];
            var k0 = T.Load512(k, 0);
            var k1 = T.Load512(k, 16);
            var k2 = T.Load512(k, 32);
            var k3 = T.Load512(k, 48);
            float x = Vector512.Sum(Vector512.FusedMultiplyAdd(a3, k3, Vector512.FusedMultiplyAdd(a2, k2, Vector512.FusedMultiplyAdd(a1, k1, a0 * k0))));
            sa[j] = x;
            if (x > ma) ma = x;
            if (m < 2) continue;
            float y = Vector512.Sum(Vector512.FusedMultiplyAdd(b3, k3, Vector512.FusedMultiplyAdd(b2, k2, Vector512.FusedMultiplyAdd(b1, k1, b0 * k0))));
            sb[j] = y;
            if (y > mb) mb = y;
            if (m < 3) continue;
            float z = Vector512.Sum(Vector512.FusedMultiplyAdd(c3, k3, Vector512.FusedMultiplyAdd(c2, k2, Vector512.FusedMultiplyAdd(c1, k1, c0 * k0))));
            sc[j] = z;
            if (z > mc) mc = z;
            if (m < 4) continue;
            float w = Vector512.Sum(Vector512.FusedMultiplyAdd(d3, k3, Vector512.FusedMultiplyAdd(d2, k2, Vector512.FusedMultiplyAdd(d1, k1, d0 * k0))));
            sd[j] = w;
            if (w > md) md = w;
        }
        max[0] = ma;
        if (m > 1) max[1] = mb;
        if (m > 2) max[2] = mc;
        if (m > 3) max[3] = md;
    }

    /// <summary>Outputs of m ≤ 4 heads: o_i = inv_i · Σ_j p_i[j] v_j (value row at values[j]), each value row loaded once
    /// for all of them.</summary>
    private static void ValueGroup<T>(float* o, ReadOnlySpan<float> inv, int m, byte** values, int length, float* s, int rowLength)
        where T : struct, IKvElements
    {
        float* sa = s, sb = s + Math.Min(1, m - 1) * rowLength, sc = s + Math.Min(2, m - 1) * rowLength, sd = s + Math.Min(3, m - 1) * rowLength;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        for (int j = 0; j < length; j++)
        {
            byte* v = values[j];
            var v0 = T.Load512(v, 0);
            var v1 = T.Load512(v, 16);
            var v2 = T.Load512(v, 32);
            var v3 = T.Load512(v, 48);
            var p = Vector512.Create(sa[j]);
            a0 = Vector512.FusedMultiplyAdd(v0, p, a0); a1 = Vector512.FusedMultiplyAdd(v1, p, a1);
            a2 = Vector512.FusedMultiplyAdd(v2, p, a2); a3 = Vector512.FusedMultiplyAdd(v3, p, a3);
            if (m < 2) continue;
            p = Vector512.Create(sb[j]);
            b0 = Vector512.FusedMultiplyAdd(v0, p, b0); b1 = Vector512.FusedMultiplyAdd(v1, p, b1);
            b2 = Vector512.FusedMultiplyAdd(v2, p, b2); b3 = Vector512.FusedMultiplyAdd(v3, p, b3);
            if (m < 3) continue;
            p = Vector512.Create(sc[j]);
            c0 = Vector512.FusedMultiplyAdd(v0, p, c0); c1 = Vector512.FusedMultiplyAdd(v1, p, c1);
            c2 = Vector512.FusedMultiplyAdd(v2, p, c2); c3 = Vector512.FusedMultiplyAdd(v3, p, c3);
            if (m < 4) continue;
            p = Vector512.Create(sd[j]);
            d0 = Vector512.FusedMultiplyAdd(v0, p, d0); d1 = Vector512.FusedMultiplyAdd(v1, p, d1);
            d2 = Vector512.FusedMultiplyAdd(v2, p, d2); d3 = Vector512.FusedMultiplyAdd(v3, p, d3);
        }
        Store(o, a0, a1, a2, a3, inv[0]);
        if (m > 1) Store(o + 64, b0, b1, b2, b3, inv[1]);
        if (m > 2) Store(o + 128, c0, c1, c2, c3, inv[2]);
        if (m > 3) Store(o + 192, d0, d1, d2, d3, inv[3]);
    }

    private static void Store(float* o, Vector512<float> o0, Vector512<float> o1, Vector512<float> o2, Vector512<float> o3, float inv)
    {
        (o0 * inv).Store(o);
        (o1 * inv).Store(o + 16);
        (o2 * inv).Store(o + 32);
        (o3 * inv).Store(o + 48);
    }
}
