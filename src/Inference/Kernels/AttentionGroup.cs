using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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

    /// <summary><see cref="HeadTransposed"/> for the query heads of one token that share a KV head (headDim 64, a prefill at
    /// Vector512): each block of transposed keys and each value row is read once for up to <see cref="GroupHeads"/> heads
    /// instead of once per head, and the heads' chains run side by side (one head's four chains wait on the fused
    /// multiply-add's latency). Every head's arithmetic is <see cref="HeadTransposed"/>'s: the same four chains per block
    /// of 16 keys, the same softmax calls, each output element one chain over the positions in order from zero; so each
    /// output is bitwise what <see cref="HeadTransposed"/> gives for that head alone.</summary>
    /// <param name="output">(heads, 64) the group's outputs.</param>
    /// <param name="q">(heads, 64) the group's queries.</param>
    /// <param name="scores">(heads, rowLength) one score row per head, rowLength at least <paramref name="length"/> rounded up to 16.</param>
    public static void GroupTransposed(float* output, float* q, int heads, ReadOnlySpan<float> keysT, int blocks,
        IKvCache cache, int layer, int kvHead, int length, float* scores, int rowLength)
    {
        byte** rows = KvBlocks.HeadRows(cache, layer, kvHead, 64, length);
        GroupTransposed(output, q, heads, keysT, blocks, cache.Format, kvHead, rows + length, length, scores, rowLength);
    }

    /// <summary><see cref="GroupTransposed(float*, float*, int, ReadOnlySpan{float}, int, IKvCache, int, int, int, float*, int)"/>
    /// with the KV head's value rows given (<see cref="KvBlocks.ValueRows"/>: at least <paramref name="length"/> of them,
    /// in the cache's <paramref name="format"/>).</summary>
    internal static void GroupTransposed(float* output, float* q, int heads, ReadOnlySpan<float> keysT, int blocks,
        KvCacheFormat format, int kvHead, byte** values, int length, float* scores, int rowLength)
    {
        int used = (length + 15) / 16;
        if (rowLength < used * 16 || keysT.Length < (kvHead + 1) * blocks * 64 * 16 || used > blocks)
            throw new ArgumentException("grouped transposed attention buffers too small");
        float scale = 1f / MathF.Sqrt(64);
        Span<float> ones = [1f, 1f, 1f, 1f];   // the values are summed with p already normalised, as HeadTransposed does
        fixed (float* kt = keysT)
        {
            float* head = kt + (long)kvHead * blocks * 64 * 16;
            for (int h = 0; h < heads; h += GroupHeads)
            {
                int m = Math.Min(GroupHeads, heads - h);
                float* s = scores + (long)h * rowLength;
                switch (m)
                {
                    case 4: ScoreTransposedGroup<Heads4>(q + h * 64, head, used, length, s, rowLength, scale); break;
                    case 3: ScoreTransposedGroup<Heads3>(q + h * 64, head, used, length, s, rowLength, scale); break;
                    case 2: ScoreTransposedGroup<Heads2>(q + h * 64, head, used, length, s, rowLength, scale); break;
                    default: ScoreTransposedGroup<Heads1>(q + h * 64, head, used, length, s, rowLength, scale); break;
                }
                for (int i = 0; i < m; i++) NormalizeTransposed(new Span<float>(s + (long)i * rowLength, used * 16), length);
                if (format == KvCacheFormat.Bf16) ValueGroup<Bf16Kv>(output + h * 64, ones, m, values, length, s, rowLength);
                else ValueGroup<F32Kv>(output + h * 64, ones, m, values, length, s, rowLength);
            }
        }
    }

    /// <summary>A number of query heads known to the JIT (a generic struct argument), so a kernel specialised for it
    /// computes no chains for the heads it does not have.</summary>
    private interface IHeads
    {
        static abstract int Count { get; }
    }

    private struct Heads1 : IHeads { public static int Count => 1; }
    private struct Heads2 : IHeads { public static int Count => 2; }
    private struct Heads3 : IHeads { public static int Count => 3; }
    private struct Heads4 : IHeads { public static int Count => 4; }

    /// <summary>Scores of THeads.Count ≤ 4 heads against blocks of 16 transposed keys, each head's as in
    /// <see cref="HeadTransposed"/>: chain i of a block takes the dimensions d ≡ i (mod 4), the block's score is
    /// ((c0 + c1) + (c2 + c3)) · scale, and the positions past <paramref name="length"/> in the last block get -inf.
    /// Specialised per count: a group of 3 (SmolLM2's 9 heads over 3 KV heads) computed a fourth head's chains and
    /// dropped them, a quarter of its multiply-adds.</summary>
    private static void ScoreTransposedGroup<THeads>(float* q, float* head, int used, int length, float* s, int rowLength, float scale)
        where THeads : struct, IHeads
    {
        float* qa = q, qb = q + 64, qc = q + 128, qd = q + 192;   // read only for the heads the group has
        for (int blk = 0; blk < used; blk++)
        {
            float* kb = head + (long)blk * 64 * 16;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            for (int d = 0; d < 64; d += 4)
            {
                var k0 = Vector512.Load(kb + d * 16);
                var k1 = Vector512.Load(kb + d * 16 + 16);
                var k2 = Vector512.Load(kb + d * 16 + 32);
                var k3 = Vector512.Load(kb + d * 16 + 48);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(qa[d]), k0, a0); a1 = Vector512.FusedMultiplyAdd(Vector512.Create(qa[d + 1]), k1, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(qa[d + 2]), k2, a2); a3 = Vector512.FusedMultiplyAdd(Vector512.Create(qa[d + 3]), k3, a3);
                if (THeads.Count > 1)
                {
                    b0 = Vector512.FusedMultiplyAdd(Vector512.Create(qb[d]), k0, b0); b1 = Vector512.FusedMultiplyAdd(Vector512.Create(qb[d + 1]), k1, b1);
                    b2 = Vector512.FusedMultiplyAdd(Vector512.Create(qb[d + 2]), k2, b2); b3 = Vector512.FusedMultiplyAdd(Vector512.Create(qb[d + 3]), k3, b3);
                }
                if (THeads.Count > 2)
                {
                    c0 = Vector512.FusedMultiplyAdd(Vector512.Create(qc[d]), k0, c0); c1 = Vector512.FusedMultiplyAdd(Vector512.Create(qc[d + 1]), k1, c1);
                    c2 = Vector512.FusedMultiplyAdd(Vector512.Create(qc[d + 2]), k2, c2); c3 = Vector512.FusedMultiplyAdd(Vector512.Create(qc[d + 3]), k3, c3);
                }
                if (THeads.Count > 3)
                {
                    d0 = Vector512.FusedMultiplyAdd(Vector512.Create(qd[d]), k0, d0); d1 = Vector512.FusedMultiplyAdd(Vector512.Create(qd[d + 1]), k1, d1);
                    d2 = Vector512.FusedMultiplyAdd(Vector512.Create(qd[d + 2]), k2, d2); d3 = Vector512.FusedMultiplyAdd(Vector512.Create(qd[d + 3]), k3, d3);
                }
            }
            var keep = blk == used - 1 && length % 16 != 0 ? LanesBelow(length % 16) : Vector512<float>.AllBitsSet;
            var ninf = Vector512.Create(float.NegativeInfinity);
            int at = blk * 16;
            Vector512.ConditionalSelect(keep, ((a0 + a1) + (a2 + a3)) * scale, ninf).Store(s + at);
            if (THeads.Count > 1) Vector512.ConditionalSelect(keep, ((b0 + b1) + (b2 + b3)) * scale, ninf).Store(s + rowLength + at);
            if (THeads.Count > 2) Vector512.ConditionalSelect(keep, ((c0 + c1) + (c2 + c3)) * scale, ninf).Store(s + 2L * rowLength + at);
            if (THeads.Count > 3) Vector512.ConditionalSelect(keep, ((d0 + d1) + (d2 + d3)) * scale, ninf).Store(s + 3L * rowLength + at);
        }
    }

    /// <summary>Scores of m ≤ 4 heads: row i of s gets q_i · k_j · scale for every position j (key row at keys[j]); max[i]
    /// its largest. Each key's 16 lane-wise products (q · scale) ⊙ k_j (one chain of four fused multiply-adds) go to a tile
    /// of 16 keys, and a tile's 16 horizontal sums are taken together (<see cref="Sum16"/>: 15 additions of whole vectors
    /// and their shuffles instead of 16 separate reductions); each score's additions are in one fixed order whatever the
    /// group, so a head scored in a group is bitwise the head scored alone (<see cref="Head"/> uses this with m = 1).</summary>
    [SkipLocalsInit]   // the tile is written before it is read: no need to zero 4 KB per call
    private static void ScoreGroup<T>(Span<float> max, float* q, int m, byte** keys, int length, float* s, int rowLength, float scale)
        where T : struct, IKvElements
    {
        // pointers of unused heads repeat the last one's (never read or written past m)
        float* qa = q, qb = q + Math.Min(1, m - 1) * 64, qc = q + Math.Min(2, m - 1) * 64, qd = q + Math.Min(3, m - 1) * 64;
        Vector512<float> a0 = Vector512.Load(qa) * scale, a1 = Vector512.Load(qa + 16) * scale, a2 = Vector512.Load(qa + 32) * scale, a3 = Vector512.Load(qa + 48) * scale;
        Vector512<float> b0 = Vector512.Load(qb) * scale, b1 = Vector512.Load(qb + 16) * scale, b2 = Vector512.Load(qb + 32) * scale, b3 = Vector512.Load(qb + 48) * scale;
        Vector512<float> c0 = Vector512.Load(qc) * scale, c1 = Vector512.Load(qc + 16) * scale, c2 = Vector512.Load(qc + 32) * scale, c3 = Vector512.Load(qc + 48) * scale;
        Vector512<float> d0 = Vector512.Load(qd) * scale, d1 = Vector512.Load(qd + 16) * scale, d2 = Vector512.Load(qd + 32) * scale, d3 = Vector512.Load(qd + 48) * scale;
        var ninf = Vector512.Create(float.NegativeInfinity);
        Vector512<float> ma = ninf, mb = ninf, mc = ninf, md = ninf;
        float* sa = s, sb = s + Math.Min(1, m - 1) * rowLength, sc = s + Math.Min(2, m - 1) * rowLength, sd = s + Math.Min(3, m - 1) * rowLength;
        float* tile = stackalloc float[GroupHeads * TileFloats];   // per head: 16 keys' products, in Sum16's slot order
        for (int j0 = 0; j0 < length; j0 += 16)
        {
            int n = Math.Min(16, length - j0);
            for (int i = 0; i < n; i++)
            {
                int j = j0 + i;
                KvBlocks.Prefetch64<T>(keys, j + KvBlocks.PrefetchAhead, length - 1);
                byte* k = keys[j];
                var k0 = T.Load512(k, 0);
                var k1 = T.Load512(k, 16);
                var k2 = T.Load512(k, 32);
                var k3 = T.Load512(k, 48);
                float* slot = tile + Slot(i);
                Vector512.FusedMultiplyAdd(a3, k3, Vector512.FusedMultiplyAdd(a2, k2, Vector512.FusedMultiplyAdd(a1, k1, a0 * k0))).Store(slot);
                if (m < 2) continue;
                Vector512.FusedMultiplyAdd(b3, k3, Vector512.FusedMultiplyAdd(b2, k2, Vector512.FusedMultiplyAdd(b1, k1, b0 * k0))).Store(slot + TileFloats);
                if (m < 3) continue;
                Vector512.FusedMultiplyAdd(c3, k3, Vector512.FusedMultiplyAdd(c2, k2, Vector512.FusedMultiplyAdd(c1, k1, c0 * k0))).Store(slot + 2 * TileFloats);
                if (m < 4) continue;
                Vector512.FusedMultiplyAdd(d3, k3, Vector512.FusedMultiplyAdd(d2, k2, Vector512.FusedMultiplyAdd(d1, k1, d0 * k0))).Store(slot + 3 * TileFloats);
            }
            ma = EmitScores(tile, sa + j0, n, ma);
            if (m > 1) mb = EmitScores(tile + TileFloats, sb + j0, n, mb);
            if (m > 2) mc = EmitScores(tile + 2 * TileFloats, sc + j0, n, mc);
            if (m > 3) md = EmitScores(tile + 3 * TileFloats, sd + j0, n, md);
        }
        max[0] = MaxAcross(ma);
        if (m > 1) max[1] = MaxAcross(mb);
        if (m > 2) max[2] = MaxAcross(mc);
        if (m > 3) max[3] = MaxAcross(md);
    }

    /// <summary>Floats of one head's tile: 16 keys' 16 lane-wise products.</summary>
    private const int TileFloats = 16 * 16;

    /// <summary>Where key i of a tile goes: <see cref="Sum16"/> puts the sum of slot 4k + b in lane 4b + k, so key i sits in
    /// slot 4 · (i mod 4) + i / 4 and its score comes out in lane i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Slot(int i) => ((i & 3) * 4 + (i >> 2)) * 16;

    /// <summary>The n ≤ 16 scores of a tile into s; returns the running maximum with them. A lane's sum reads only its own
    /// slot, so the slots a partial tile leaves unwritten reach only the lanes past n, which are neither stored nor
    /// counted in the maximum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> EmitScores(float* tile, float* s, int n, Vector512<float> max)
    {
        var r = Sum16(tile);
        if (n == 16)
        {
            r.Store(s);
            return Vector512.Max(max, r);
        }
        for (int i = 0; i < n; i++) s[i] = r.GetElement(i);
        return Vector512.Max(max, Vector512.ConditionalSelect(LanesBelow(n), r, Vector512.Create(float.NegativeInfinity)));
    }

    /// <summary>A mask of the lanes below n (0 ≤ n ≤ 16): the positions a partial block of 16 holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LanesBelow(int n) =>
        Vector512.LessThan(Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create((float)n));

    /// <summary>The horizontal sums of the 16 vectors at t (slot p at t + 16p), the sum of slot 4k + b in lane 4b + k. Each
    /// sum's order: 128-bit quarters q0..q3 as (q0 + q2) + (q1 + q3) lane-wise, then that quarter's lanes as
    /// (l0 + l2) + (l1 + l3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Sum16(float* t)
    {
        var x0 = Quarters(t);
        var x1 = Quarters(t + 64);
        var x2 = Quarters(t + 128);
        var x3 = Quarters(t + 192);
        // block b of x_k: the 4 partial sums of slot 4k + b
        var s = Avx512F.UnpackLow(x0, x1) + Avx512F.UnpackHigh(x0, x1);
        var u = Avx512F.UnpackLow(x2, x3) + Avx512F.UnpackHigh(x2, x3);
        return Avx512F.Shuffle(s, u, 0b01_00_01_00) + Avx512F.Shuffle(s, u, 0b11_10_11_10);
    }

    /// <summary>Four slots at t reduced to one vector whose 128-bit block b holds slot b's quarters summed lane-wise,
    /// (q0 + q2) + (q1 + q3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Quarters(float* t)
    {
        var v0 = Vector512.Load(t);
        var v1 = Vector512.Load(t + 16);
        var v2 = Vector512.Load(t + 32);
        var v3 = Vector512.Load(t + 48);
        var w01 = Avx512F.Shuffle4x128(v0, v1, 0b01_00_01_00) + Avx512F.Shuffle4x128(v0, v1, 0b11_10_11_10);
        var w23 = Avx512F.Shuffle4x128(v2, v3, 0b01_00_01_00) + Avx512F.Shuffle4x128(v2, v3, 0b11_10_11_10);
        return Avx512F.Shuffle4x128(w01, w23, 0b10_00_10_00) + Avx512F.Shuffle4x128(w01, w23, 0b11_01_11_01);
    }

    /// <summary>The largest lane (exact in any order).</summary>
    private static float MaxAcross(Vector512<float> v)
    {
        var h = Vector256.Max(v.GetLower(), v.GetUpper());
        var q = Vector128.Max(h.GetLower(), h.GetUpper());
        return MathF.Max(MathF.Max(q[0], q[1]), MathF.Max(q[2], q[3]));
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
            KvBlocks.Prefetch64<T>(values, j + KvBlocks.PrefetchAhead, length - 1);
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
