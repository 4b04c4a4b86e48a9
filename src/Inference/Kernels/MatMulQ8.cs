using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>y = x Wᵀ for Q8 weights (<see cref="Q8Layout"/>) with the input rows quantized per block of 32 to int8
/// (<see cref="Q8Input"/>), as llama.cpp's q8_0 × q8_0 dot: per block an exact integer dot product (8 rows per 256-bit
/// register, 4 columns per lane), then y += float(dot) · (weight scale · input scale) as one fused multiply-add, blocks in
/// ascending order. The dot is AVX-VNNI's u8×s8 instruction where there is one (.NET 10 exposes it at 256 bits only,
/// the width Zen 4 executes it at anyway), with the +128 of the stored bytes taken off by the input's block sums; on AVX2
/// alone it is llama.cpp's emulation: |v| (u8) × (x with v's sign) (s8) in pairs to s16 (at most 2 · 128 · 127, no
/// saturation), pairs of those to s32, which is Σ v · x with no offset to take off. With AVX-512BW (<see cref="Panel1x512"/>)
/// the stored bytes and the inputs are widened to 16 bits and multiplied in pairs (16 rows per register, the +128 taken
/// off as with VNNI) where AVX-VNNI is absent (an AVX-512 Xeon: .NET 10 offers no 512-bit VNNI), twice the AVX2 path's
/// work per instruction. All these integers are exact, so every path gives the same floats. Every output is computed by one thread in that fixed order, so the result does not depend
/// on the batch, the chunking, the number of cores or the instruction set, and equals <see cref="Naive"/> bit for bit.</summary>
public static unsafe class MatMulQ8
{
    private const int BatchBlock = 64;   // input rows kept hot while a chunk of panels streams past

    public static bool FastPath(SimdLevel level) => level != SimdLevel.Scalar && (AvxVnni.IsSupported || Avx2.IsSupported && Fma.IsSupported);

    /// <summary>Whether the 512-bit dot product runs at this level: AVX-512BW without AVX-VNNI (an AVX-512 Xeon has only
    /// VNNI's EVEX form, which .NET 10 does not expose). Where AVX-VNNI is present its u8×s8 instruction does a 32-byte
    /// dot in one operation, more than the widened pairs do, so it stays the choice. The inputs are then quantized with
    /// 16-bit copies.</summary>
    public static bool Wide(SimdLevel level) => level == SimdLevel.Vector512 && Avx512BW.IsSupported && !AvxVnni.IsSupported;

    /// <summary>Output rows [r0, r1) (multiples of 16) of quantized input rows [b0, b1): y[b · ys + r] (ys: y's row
    /// stride). Input rows go in blocks of <see cref="BatchBlock"/> counted from b0. Inputs with 16-bit copies
    /// (<see cref="Q8Input.Values16"/>) take the 512-bit dot product.</summary>
    internal static void Rows(float* y, int ys, in Q8Input x, WeightMatrix w, int b0, int b1, int r0, int r1) =>
        Rows(y, ys, x, w, b0, b1, r0, r1, x.Values16 != null && Avx512BW.IsSupported ? Q8Dot.Avx512 : AvxVnni.IsSupported ? Q8Dot.AvxVnni : Q8Dot.Avx2);

    /// <summary>The integer dot products of <see cref="Rows(float*, int, in Q8Input, WeightMatrix, int, int, int, int)"/>.</summary>
    internal enum Q8Dot { Avx2, AvxVnni, Avx512 }

    /// <summary><see cref="Rows(float*, int, in Q8Input, WeightMatrix, int, int, int, int)"/> with the dot product chosen
    /// (each one runs wherever its instructions exist, so that all can be tested there; Avx512 needs the 16-bit inputs).</summary>
    internal static void Rows(float* y, int ys, in Q8Input x, WeightMatrix w, int b0, int b1, int r0, int r1, Q8Dot dot)
    {
        if (dot == Q8Dot.Avx512 && x.Values16 == null) throw new ArgumentException("the 512-bit Q8 dot product needs the inputs' 16-bit copies");
        int blocks = x.Blocks, stride = blocks * Q8Layout.Block;
        byte* data = (byte*)w.Data;
        for (int bb = b0; bb < b1; bb += BatchBlock)
        {
            int be = Math.Min(b1, bb + BatchBlock);
            for (int r = r0; r < r1; r += Q8Layout.Rows)
            {
                byte* panel = data + (long)(r / Q8Layout.Rows) * blocks * Q8Layout.BlockBytes;
                int b = bb;
                for (; b + 4 <= be; b += 4)
                {
                    float* yb = y + (long)b * ys + r;
                    sbyte* xb = x.Values + (long)b * stride;
                    if (dot == Q8Dot.Avx512) Panel4x512(yb, ys, panel, blocks, x.Values16 + (long)b * stride, stride, x.Scales + b * blocks, x.Sums + b * blocks);
                    else if (dot == Q8Dot.AvxVnni) Panel4(yb, ys, panel, blocks, xb, stride, x.Scales + b * blocks, x.Sums + b * blocks);
                    else Panel4Avx2(yb, ys, panel, blocks, xb, stride, x.Scales + b * blocks);
                }
                for (; b < be; b++)
                {
                    float* yb = y + (long)b * ys + r;
                    sbyte* xb = x.Values + (long)b * stride;
                    if (dot == Q8Dot.Avx512) Panel1x512(yb, panel, blocks, x.Values16 + (long)b * stride, x.Scales + b * blocks, x.Sums + b * blocks);
                    else if (dot == Q8Dot.AvxVnni) Panel1(yb, panel, blocks, xb, x.Scales + b * blocks, x.Sums + b * blocks);
                    else Panel1Avx2(yb, panel, blocks, xb, x.Scales + b * blocks);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> w, sbyte* x) =>
        AvxVnni.MultiplyWideningAndAdd(acc, w, Vector256.Create(*(int*)x).AsSByte());

    /// <summary>Eight f16 bit patterns as f32, exactly: the bits moved into f32 position read as the value times 2^-112
    /// (normal and subnormal alike), so one multiply by 2^112 (exact) finishes it. Not for infinities or NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(Vector256<uint> h) =>
        (((h & Vector256.Create(0x8000u)) << 16) | ((h & Vector256.Create(0x7fffu)) << 13)).AsSingle() * Vector256.Create(Two112);

    private const float Two112 = 5.192296858534828e33f;   // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scaled(Vector256<float> acc, Vector256<int> dot, int sum, Vector256<float> scale) =>
        Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dot - Vector256.Create(sum << 7)), scale, acc);

    /// <summary>16 outputs (y[0..16]) of one input row; two accumulators per half (even and odd quads).</summary>
    private static void Panel1(float* y, byte* panel, int blocks, sbyte* xq, float* xs, int* xc)
    {
        Vector256<float> f0 = default, f1 = default;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            sbyte* xb = xq + blk * Q8Layout.Block;
            Vector256<int> a0 = default, a1 = default, c0 = default, c1 = default;
            for (int q = 0; q < 8; q += 2)
            {
                byte* pq = p + q * Q8Layout.QuadBytes;
                a0 = Dot(a0, Vector256.Load(pq), xb + q * 4);
                a1 = Dot(a1, Vector256.Load(pq + 32), xb + q * 4);
                c0 = Dot(c0, Vector256.Load(pq + 64), xb + q * 4 + 4);
                c1 = Dot(c1, Vector256.Load(pq + 96), xb + q * 4 + 4);
            }
            var d = Vector256.Create(xs[blk]);
            var s = Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset));
            f0 = Scaled(f0, a0 + c0, xc[blk], Widen(Vector256.WidenLower(s)) * d);
            f1 = Scaled(f1, a1 + c1, xc[blk], Widen(Vector256.WidenUpper(s)) * d);
        }
        f0.Store(y);
        f1.Store(y + 8);
    }

    /// <summary>16 outputs of four input rows (y rows ys apart, x rows xstride apart): each weight load feeds four rows.</summary>
    private static void Panel4(float* y, int ys, byte* panel, int blocks, sbyte* xq, int xstride, float* xs, int* xc)
    {
        Vector256<float> f00 = default, f01 = default, f10 = default, f11 = default;
        Vector256<float> f20 = default, f21 = default, f30 = default, f31 = default;
        sbyte* x0 = xq, x1 = xq + xstride, x2 = x1 + xstride, x3 = x2 + xstride;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            int o = blk * Q8Layout.Block;
            Vector256<int> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector256<int> a20 = default, a21 = default, a30 = default, a31 = default;
            for (int q = 0; q < 8; q++)
            {
                byte* pq = p + q * Q8Layout.QuadBytes;
                var lo = Vector256.Load(pq);
                var hi = Vector256.Load(pq + 32);
                int k = o + q * 4;
                a00 = Dot(a00, lo, x0 + k); a01 = Dot(a01, hi, x0 + k);
                a10 = Dot(a10, lo, x1 + k); a11 = Dot(a11, hi, x1 + k);
                a20 = Dot(a20, lo, x2 + k); a21 = Dot(a21, hi, x2 + k);
                a30 = Dot(a30, lo, x3 + k); a31 = Dot(a31, hi, x3 + k);
            }
            var s = Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset));
            var sl = Widen(Vector256.WidenLower(s));
            var sh = Widen(Vector256.WidenUpper(s));
            var d = Vector256.Create(xs[blk]);
            f00 = Scaled(f00, a00, xc[blk], sl * d); f01 = Scaled(f01, a01, xc[blk], sh * d);
            d = Vector256.Create(xs[blocks + blk]);
            f10 = Scaled(f10, a10, xc[blocks + blk], sl * d); f11 = Scaled(f11, a11, xc[blocks + blk], sh * d);
            d = Vector256.Create(xs[2 * blocks + blk]);
            f20 = Scaled(f20, a20, xc[2 * blocks + blk], sl * d); f21 = Scaled(f21, a21, xc[2 * blocks + blk], sh * d);
            d = Vector256.Create(xs[3 * blocks + blk]);
            f30 = Scaled(f30, a30, xc[3 * blocks + blk], sl * d); f31 = Scaled(f31, a31, xc[3 * blocks + blk], sh * d);
        }
        f00.Store(y); f01.Store(y + 8);
        f10.Store(y + ys); f11.Store(y + ys + 8);
        f20.Store(y + 2 * ys); f21.Store(y + 2 * ys + 8);
        f30.Store(y + 3 * ys); f31.Store(y + 3 * ys + 8);
    }

    /// <summary>Σ v · x over each lane's 4 columns, added to acc: <paramref name="u"/> = |v| (v = <paramref name="v"/>, the
    /// stored byte XOR 0x80), x broadcast from 4 bytes and given v's sign (x ≥ -127, so negating it cannot overflow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> v, sbyte* x) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Avx2.Sign(Vector256.Create(*(int*)x).AsSByte(), v)), Vector256<short>.One);

    /// <summary>The signed values of 8 rows × 4 columns (bytes XOR 0x80).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Signed(byte* p) => Vector256.Load((sbyte*)p) ^ Vector256.Create(sbyte.MinValue);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scaled(Vector256<float> acc, Vector256<int> dot, Vector256<float> scale) =>
        Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dot), scale, acc);

    /// <summary><see cref="Panel1"/> on AVX2.</summary>
    private static void Panel1Avx2(float* y, byte* panel, int blocks, sbyte* xq, float* xs)
    {
        Vector256<float> f0 = default, f1 = default;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            sbyte* xb = xq + blk * Q8Layout.Block;
            Vector256<int> a0 = default, a1 = default, c0 = default, c1 = default;
            for (int q = 0; q < 8; q += 2)
            {
                byte* pq = p + q * Q8Layout.QuadBytes;
                var v = Signed(pq); a0 = Dot(a0, Avx2.Abs(v), v, xb + q * 4);
                v = Signed(pq + 32); a1 = Dot(a1, Avx2.Abs(v), v, xb + q * 4);
                v = Signed(pq + 64); c0 = Dot(c0, Avx2.Abs(v), v, xb + q * 4 + 4);
                v = Signed(pq + 96); c1 = Dot(c1, Avx2.Abs(v), v, xb + q * 4 + 4);
            }
            var d = Vector256.Create(xs[blk]);
            var s = Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset));
            f0 = Scaled(f0, a0 + c0, Widen(Vector256.WidenLower(s)) * d);
            f1 = Scaled(f1, a1 + c1, Widen(Vector256.WidenUpper(s)) * d);
        }
        f0.Store(y);
        f1.Store(y + 8);
    }

    /// <summary><see cref="Panel4"/> on AVX2: per block the low 8 rows of the four inputs, then the high 8, so that the
    /// weights (signed and absolute, made once per load), the four integer sums and a broadcast fit AVX2's 16 registers.</summary>
    private static void Panel4Avx2(float* y, int ys, byte* panel, int blocks, sbyte* xq, int xstride, float* xs)
    {
        Vector256<float> f00 = default, f01 = default, f10 = default, f11 = default;
        Vector256<float> f20 = default, f21 = default, f30 = default, f31 = default;
        sbyte* x0 = xq, x1 = xq + xstride, x2 = x1 + xstride, x3 = x2 + xstride;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            int o = blk * Q8Layout.Block;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int q = 0; q < 8; q++)
            {
                var v = Signed(p + q * Q8Layout.QuadBytes);
                var u = Avx2.Abs(v);
                int k = o + q * 4;
                a0 = Dot(a0, u, v, x0 + k); a1 = Dot(a1, u, v, x1 + k);
                a2 = Dot(a2, u, v, x2 + k); a3 = Dot(a3, u, v, x3 + k);
            }
            var sl = Widen(Vector256.WidenLower(Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset))));
            f00 = Scaled(f00, a0, sl * Vector256.Create(xs[blk])); f10 = Scaled(f10, a1, sl * Vector256.Create(xs[blocks + blk]));
            f20 = Scaled(f20, a2, sl * Vector256.Create(xs[2 * blocks + blk])); f30 = Scaled(f30, a3, sl * Vector256.Create(xs[3 * blocks + blk]));
            a0 = default; a1 = default; a2 = default; a3 = default;
            for (int q = 0; q < 8; q++)
            {
                var v = Signed(p + q * Q8Layout.QuadBytes + 32);
                var u = Avx2.Abs(v);
                int k = o + q * 4;
                a0 = Dot(a0, u, v, x0 + k); a1 = Dot(a1, u, v, x1 + k);
                a2 = Dot(a2, u, v, x2 + k); a3 = Dot(a3, u, v, x3 + k);
            }
            var sh = Widen(Vector256.WidenUpper(Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset))));
            f01 = Scaled(f01, a0, sh * Vector256.Create(xs[blk])); f11 = Scaled(f11, a1, sh * Vector256.Create(xs[blocks + blk]));
            f21 = Scaled(f21, a2, sh * Vector256.Create(xs[2 * blocks + blk])); f31 = Scaled(f31, a3, sh * Vector256.Create(xs[3 * blocks + blk]));
        }
        f00.Store(y); f01.Store(y + 8);
        f10.Store(y + ys); f11.Store(y + ys + 8);
        f20.Store(y + 2 * ys); f21.Store(y + 2 * ys + 8);
        f30.Store(y + 3 * ys); f31.Store(y + 3 * ys + 8);
    }

    /// <summary>Lane i: lanes 2i and 2i + 1 of <paramref name="lo"/> (rows 0–7) added for i &lt; 8, of <paramref name="hi"/>
    /// (rows 8–15) for i ≥ 8: each row's dot for the block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairSums(Vector512<int> lo, Vector512<int> hi) =>
        Avx512F.PermuteVar16x32x2(lo, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi)
        + Avx512F.PermuteVar16x32x2(lo, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi);

    /// <summary>The block's 16 f16 weight scales as f32 (exactly, as <see cref="Widen"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales16(byte* p)
    {
        var h = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)(p + Q8Layout.ScaleOffset)));
        return (((h & Vector512.Create(0x8000u)) << 16) | ((h & Vector512.Create(0x7fffu)) << 13)).AsSingle() * Vector512.Create(Two112);
    }

    /// <summary>acc + float(dot − 128 · sum) · scale: <see cref="Scaled(Vector256{float}, Vector256{int}, int, Vector256{float})"/> for 16 rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scaled512(Vector512<float> acc, Vector512<int> dot, int sum, Vector512<float> scale) =>
        Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(dot - Vector512.Create(sum << 7)), scale, acc);

    /// <summary>4 columns of an input row as 16-bit pairs in every 64-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Columns4(short* x) => Vector512.Create(*(long*)x).AsInt16();

    /// <summary>16 outputs (y[0..16]) of one input row with the 512-bit dot product (AVX-512BW): a quad's 16 rows × 4
    /// columns of stored bytes (value + 128) widened to 16 bits, rows 0–7 and rows 8–15 in one register each, and multiplied by the input's 4 columns as 16-bit pairs
    /// (<c>vpmaddwd</c>: lane 2i gets row i's columns 0 and 1, lane 2i + 1 its columns 2 and 3, at most 2 · 255 · 127 each,
    /// exact in 32 bits). After a block's 8 quads the lane pairs are added (row i's dot of the stored bytes) and 128 · the
    /// input block's sum taken off, which leaves the exact Σ v · x of the other paths; the floats then follow the same
    /// fused multiply-add per block in the same order, so the outputs are bitwise theirs.</summary>
    private static void Panel1x512(float* y, byte* panel, int blocks, short* xq, float* xs, int* xc)
    {
        Vector512<float> f = default;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            short* xb = xq + blk * Q8Layout.Block;
            Vector512<int> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
            for (int q = 0; q < 8; q += 2)
            {
                byte* pq = p + q * Q8Layout.QuadBytes;
                var x0 = Columns4(xb + q * 4);
                var x1 = Columns4(xb + q * 4 + 4);
                lo0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(pq)), x0);
                hi0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(pq + 32)), x0);
                lo1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(pq + 64)), x1);
                hi1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(pq + 96)), x1);
            }
            f = Scaled512(f, PairSums(lo0 + lo1, hi0 + hi1), xc[blk], Scales16(p) * Vector512.Create(xs[blk]));
        }
        f.Store(y);
    }

    /// <summary>16 outputs of four input rows (y rows ys apart, x rows xstride apart): each widened weight load feeds four rows.</summary>
    private static void Panel4x512(float* y, int ys, byte* panel, int blocks, short* xq, int xstride, float* xs, int* xc)
    {
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default;
        short* x0 = xq, x1 = xq + xstride, x2 = x1 + xstride, x3 = x2 + xstride;
        for (int blk = 0; blk < blocks; blk++)
        {
            byte* p = panel + (long)blk * Q8Layout.BlockBytes;
            int o = blk * Q8Layout.Block;
            Vector512<int> l0 = default, h0 = default, l1 = default, h1 = default, l2 = default, h2 = default, l3 = default, h3 = default;
            for (int q = 0; q < 8; q++)
            {
                byte* pq = p + q * Q8Layout.QuadBytes;
                var lo = Avx512BW.ConvertToVector512Int16(Vector256.Load(pq));
                var hi = Avx512BW.ConvertToVector512Int16(Vector256.Load(pq + 32));
                int k = o + q * 4;
                var c = Columns4(x0 + k); l0 += Avx512BW.MultiplyAddAdjacent(lo, c); h0 += Avx512BW.MultiplyAddAdjacent(hi, c);
                c = Columns4(x1 + k); l1 += Avx512BW.MultiplyAddAdjacent(lo, c); h1 += Avx512BW.MultiplyAddAdjacent(hi, c);
                c = Columns4(x2 + k); l2 += Avx512BW.MultiplyAddAdjacent(lo, c); h2 += Avx512BW.MultiplyAddAdjacent(hi, c);
                c = Columns4(x3 + k); l3 += Avx512BW.MultiplyAddAdjacent(lo, c); h3 += Avx512BW.MultiplyAddAdjacent(hi, c);
            }
            var s = Scales16(p);
            f0 = Scaled512(f0, PairSums(l0, h0), xc[blk], s * Vector512.Create(xs[blk]));
            f1 = Scaled512(f1, PairSums(l1, h1), xc[blocks + blk], s * Vector512.Create(xs[blocks + blk]));
            f2 = Scaled512(f2, PairSums(l2, h2), xc[2 * blocks + blk], s * Vector512.Create(xs[2 * blocks + blk]));
            f3 = Scaled512(f3, PairSums(l3, h3), xc[3 * blocks + blk], s * Vector512.Create(xs[3 * blocks + blk]));
        }
        f0.Store(y);
        f1.Store(y + ys);
        f2.Store(y + 2 * ys);
        f3.Store(y + 3 * ys);
    }

    /// <summary>The plain scalar twin: each input row quantized per block by <see cref="Q8Layout.QuantizeBlock"/>, then
    /// y[b, r] = Σ_blocks float(Σ_j w[r, j] · q[b, j]) · (scale_w · scale_x), one fused multiply-add per block.</summary>
    public static void Naive(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        int cols = w.Cols, blocks = Q8Layout.BlocksPerRow(cols);
        var q = new sbyte[Q8Layout.Block];
        var xq = new sbyte[blocks * Q8Layout.Block];
        var xs = new float[blocks];
        var data = (byte*)w.Data;
        for (int b = 0; b < n; b++)
        {
            Array.Clear(xq);
            for (int blk = 0; blk < blocks; blk++)
            {
                int k0 = blk * Q8Layout.Block, len = Math.Min(Q8Layout.Block, cols - k0);
                xs[blk] = Q8Layout.QuantizeBlock(x.Slice(b * cols + k0, len), q);
                q.AsSpan(0, len).CopyTo(xq.AsSpan(k0));
            }
            for (int r = 0; r < w.Rows; r++)
            {
                float acc = 0;
                for (int blk = 0; blk < blocks; blk++)
                {
                    byte* p = Q8Layout.BlockAt(data, cols, r, blk);
                    int dot = 0;
                    for (int j = 0; j < Q8Layout.Block; j++) dot += (p[Q8Layout.ValueOffset(r % Q8Layout.Rows, j)] - 128) * xq[blk * Q8Layout.Block + j];
                    acc = MathF.FusedMultiplyAdd(dot, Q8Layout.Scale(data, cols, r, blk) * xs[blk], acc);
                }
                y[b * w.Rows + r] = acc;
            }
        }
    }
}
