using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Runtime.InteropServices;

namespace Loom.Inference.Kernels;

/// <summary>Row-major weights at 256 bits (AVX2 and FMA without AVX-512, where weights stay row-major: the packed panels
/// pay only with 32 vector registers). Tiles of 4 weight rows × 3 input rows hold 12 accumulators, so each weight load
/// feeds three sequences and each input load four rows; 4 × 2 or 4 × 1 takes the batch's last rows, and 8 × 1 a lone input row
/// (decode at batch 1: eight independent chains and weight streams). Every output is one chain of
/// 8-wide fused multiply-adds over k in ascending order, summed across its lanes once, then the columns past the vector
/// loop one at a time, whichever tile or edge-row dot computed it: an output's bits do not depend on the tile, on its place
/// in the batch, or on the chunking. f32: 8 columns a step (<see cref="DotF32"/>'s arithmetic). bf16: 16 columns a step
/// from one 32-byte load, the even columns widened by a shift and the odd ones by a mask (two cheap operations where
/// widening in order takes four), against a copy of the inputs with each block of 16 split into its even and odd
/// columns (<see cref="SplitInputs"/>, made once per matmul); lane i adds column 2i, then column 2i + 1.</summary>
public static unsafe partial class MatMulKernel
{
    /// <summary>Whether the 256-bit row-major tiles run at this level on this machine.</summary>
    internal static bool Tiles256(SimdLevel level) => level == SimdLevel.Vector256 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Output rows [r0, r1) of input rows [b0, b1) (blocks of <see cref="BatchBlock"/> from b0) with the 256-bit
    /// tiles. bf16 reads xs, the inputs split by <see cref="SplitInputs"/> (<see cref="Forward(ReadOnlySpan{MatMulTarget}, float*, int, SimdLevel, WorkerPool?)"/>
    /// makes it once per region; made here only for a caller that has none).</summary>
    private static void Rows256(float* y, int ys, float* x, float* xs, WeightMatrix w, int b0, int b1, int r0, int r1)
    {
        int cols = w.Cols;
        bool f32 = w.Type == WeightType.F32;
        if (!f32 && xs == null) xs = SplitInputs(x + (long)b0 * cols, b1 - b0, cols, ref _split) - (long)b0 * cols;
        for (int bb = b0; bb < b1; bb += BatchBlock)
        {
            int be = Math.Min(b1, bb + BatchBlock);
            int r = r0;
            float* widen = !f32 && be - bb >= WidenMinRows && cols % 16 == 0 ? WidenBuffer(4 * cols) : null;
            if (be - bb == 1)
            {
                // one input row (decode at batch 1): eight weight rows a pass, eight independent chains and streams
                for (; r + 8 <= r1; r += 8)
                    if (f32) TileF32x8x1(y + (long)bb * ys + r, x + (long)bb * cols, (float*)w.Data + (long)r * cols, cols);
                    else TileBF16x8x1(y + (long)bb * ys + r, x + (long)bb * cols, xs + (long)bb * cols, (ushort*)w.Data + (long)r * cols, cols);
            }
            // tiles of 3, then the last 2 or 4 rows in tiles of 2 (a lone last row would run four chains waiting on their
            // latency): the row after the last tile of 3
            int rows = be - bb, threes = bb + 3 * (rows % 3 == 1 && rows >= 4 ? rows / 3 - 1 : rows / 3);
            for (; r + 4 <= r1; r += 4)
            {
                int b = bb;
                if (f32)
                {
                    float* wr = (float*)w.Data + (long)r * cols;
                    // the first tile over these rows asks for the next four (Prefetch2); the later ones find these in cache
                    byte* next = (byte*)(wr + 4L * cols);
                    for (; b < threes; b += 3) TileF32x4x3(y + (long)b * ys + r, ys, x + (long)b * cols, wr, cols, b == bb ? next : null);
                    for (; b + 2 <= be; b += 2) TileF32x4x2(y + (long)b * ys + r, ys, x + (long)b * cols, wr, cols, b == bb ? next : null);
                    if (b < be) TileF32x4x1(y + (long)b * ys + r, x + (long)b * cols, wr, cols, b == bb ? next : null);
                }
                else if (widen != null)
                {
                    // the four rows widened once (in the split order) feed every tile of this block through the f32 tiles:
                    // the same products in the same order as the bf16 tiles, without the integer operations in the loop
                    WidenSplit(widen, (ushort*)w.Data + (long)r * cols, 4, cols);
                    for (; b < threes; b += 3) TileF32x4x3(y + (long)b * ys + r, ys, xs + (long)b * cols, widen, cols, null);
                    for (; b + 2 <= be; b += 2) TileF32x4x2(y + (long)b * ys + r, ys, xs + (long)b * cols, widen, cols, null);
                    if (b < be) TileF32x4x1(y + (long)b * ys + r, xs + (long)b * cols, widen, cols, null);
                }
                else
                {
                    ushort* wr = (ushort*)w.Data + (long)r * cols;
                    for (; b < threes; b += 3) TileBF16x4x3(y + (long)b * ys + r, ys, x + (long)b * cols, xs + (long)b * cols, wr, cols);
                    for (; b + 2 <= be; b += 2) TileBF16x4x2(y + (long)b * ys + r, ys, x + (long)b * cols, xs + (long)b * cols, wr, cols);
                    if (b < be) TileBF16x4x1(y + (long)b * ys + r, x + (long)b * cols, xs + (long)b * cols, wr, cols);
                }
            }
            for (; r < r1; r++)
                for (int b = bb; b < be; b++)
                    y[(long)b * ys + r] = f32
                        ? DotF32((float*)w.Data + (long)r * cols, x + (long)b * cols, cols, SimdLevel.Vector256)
                        : DotBF16Split((ushort*)w.Data + (long)r * cols, x + (long)b * cols, xs + (long)b * cols, cols);
        }
    }

    /// <summary>Asks for the 64-byte lines at p and p + 64 ahead of use. A tile's weight rows are short (a SmolLM2 row is
    /// 1,152 bytes in bf16), too short for the hardware's stream prefetchers to train on each row before it ends, so at
    /// batch 1, where the weights come from memory and nothing else hides the wait, a tile asks for the next tile's rows
    /// (contiguous after its own) while it computes: 1.3x faster bf16 decode at batch 1 on a Zen 3 EPYC. Prefetches do
    /// not fault, so reaching past the matrix's end is harmless; they change no arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch2(byte* p)
    {
        Sse.Prefetch0(p);
        Sse.Prefetch0(p + 64);
    }

    [ThreadStatic] private static float[]? _split;
    [ThreadStatic] private static float[]? _widened;

    /// <summary>bf16 blocks of at least this many input rows widen each group of four weight rows to f32 once (three tiles
    /// of three and more share the widening). At 8 rows (two tiles of 3 and one of 2) the bf16 tiles were faster: decode
    /// batch 8 39.4 → 35.5 ms per step on a Zen 3 EPYC (BENCHMARKS.md, Run M).</summary>
    internal const int WidenMinRows = 9;

    /// <summary>This thread's pinned buffer of at least <paramref name="floats"/> floats for widened weight rows.</summary>
    private static float* WidenBuffer(int floats)
    {
        if (_widened == null || _widened.Length < floats) _widened = GC.AllocateArray<float>(Math.Max(floats, 4096), pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_widened));   // pinned: the address is stable
    }

    /// <summary><paramref name="rows"/> bf16 rows of <paramref name="cols"/> (a multiple of 16) columns as f32, each block
    /// of 16 columns as its 8 even columns, then its 8 odd ones: the order of <see cref="SplitInputs"/>, so an f32 tile over
    /// these rows and the split inputs adds exactly the products of the bf16 tiles in their order.</summary>
    internal static void WidenSplit(float* dst, ushort* w, int rows, int cols)
    {
        for (int i = 0; i < rows; i++)
        {
            ushort* s = w + (long)i * cols;
            float* d = dst + (long)i * cols;
            for (int k = 0; k < cols; k += 16)
            {
                if ((k & 31) == 0) Sse.Prefetch0((byte*)(s + k) + 8L * cols);   // the next group's rows, a line every other step
                var u = Vector256.Load((uint*)(s + k));
                Even(u).Store(d + k);
                Odd(u).Store(d + k + 8);
            }
        }
    }

    /// <summary>n input rows (cols apart) copied with each whole block of 16 columns split into its 8 even columns, then its
    /// 8 odd ones; the columns past the last whole block as they are. Into the given per-thread buffer (pinned; grows, rarely).</summary>
    internal static float* SplitInputs(float* x, int n, int cols, ref float[]? buffer)
    {
        long size = (long)n * cols;
        if (buffer == null || buffer.Length < size) buffer = GC.AllocateArray<float>((int)Math.Max(size, 4096), pinned: true);
        int end = cols & ~15;
        fixed (float* dst = buffer)
        {
            for (int b = 0; b < n; b++)
            {
                float* s = x + (long)b * cols, d = dst + (long)b * cols;
                for (int k = 0; k < end; k += 16)
                {
                    var lo = Vector256.Load(s + k);
                    var hi = Vector256.Load(s + k + 8);
                    // (a0 a2 b0 b2 | a4 a6 b4 b6) for even, (a1 a3 b1 b3 | ...) for odd, then lanes in order
                    var even = Avx.Shuffle(lo, hi, 0b10_00_10_00);
                    var odd = Avx.Shuffle(lo, hi, 0b11_01_11_01);
                    Avx2.Permute4x64(even.AsDouble(), 0b11_01_10_00).AsSingle().Store(d + k);
                    Avx2.Permute4x64(odd.AsDouble(), 0b11_01_10_00).AsSingle().Store(d + k + 8);
                }
                for (int k = end; k < cols; k++) d[k] = s[k];
            }
            return dst;   // pinned array: the address stays valid after the fixed block
        }
    }

    /// <summary>s + Σ w[k] x[k] for k in [k0, cols), one product at a time (the columns past the vector loop).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailF32(float s, float* w, float* x, int k0, int cols)
    {
        for (int k = k0; k < cols; k++) s += w[k] * x[k];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailBF16(float s, ushort* w, float* x, int k0, int cols)
    {
        for (int k = k0; k < cols; k++) s += BitConverter.Int32BitsToSingle(w[k] << 16) * x[k];
        return s;
    }

    /// <summary>y[j · ys + i] for weight rows w + i · cols (i &lt; 4) and input rows x + j · cols (j &lt; 3).</summary>
    private static void TileF32x4x3(float* y, int ys, float* x, float* w, int cols, byte* next)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x, x1 = x0 + cols, x2 = x1 + cols;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
            if (next != null) Prefetch2(next + 16L * k);
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k); var v2 = Vector256.Load(x2 + k);
            var u = Vector256.Load(w0 + k);
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01); a02 = Fma.MultiplyAdd(u, v2, a02);
            u = Vector256.Load(w1 + k);
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11); a12 = Fma.MultiplyAdd(u, v2, a12);
            u = Vector256.Load(w2 + k);
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21); a22 = Fma.MultiplyAdd(u, v2, a22);
            u = Vector256.Load(w3 + k);
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31); a32 = Fma.MultiplyAdd(u, v2, a32);
        }
        float* y0 = y, y1 = y + ys, y2 = y1 + ys;
        y0[0] = TailF32(Vector256.Sum(a00), w0, x0, end, cols); y1[0] = TailF32(Vector256.Sum(a01), w0, x1, end, cols); y2[0] = TailF32(Vector256.Sum(a02), w0, x2, end, cols);
        y0[1] = TailF32(Vector256.Sum(a10), w1, x0, end, cols); y1[1] = TailF32(Vector256.Sum(a11), w1, x1, end, cols); y2[1] = TailF32(Vector256.Sum(a12), w1, x2, end, cols);
        y0[2] = TailF32(Vector256.Sum(a20), w2, x0, end, cols); y1[2] = TailF32(Vector256.Sum(a21), w2, x1, end, cols); y2[2] = TailF32(Vector256.Sum(a22), w2, x2, end, cols);
        y0[3] = TailF32(Vector256.Sum(a30), w3, x0, end, cols); y1[3] = TailF32(Vector256.Sum(a31), w3, x1, end, cols); y2[3] = TailF32(Vector256.Sum(a32), w3, x2, end, cols);
    }

    /// <summary><see cref="TileF32x4x3"/> for two input rows (the batch's last two): eight chains, so the fused multiply-adds
    /// still overlap where four chains of <see cref="TileF32x4x1"/> wait on each other's latency.</summary>
    private static void TileF32x4x2(float* y, int ys, float* x, float* w, int cols, byte* next)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x, x1 = x0 + cols;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
            if (next != null) Prefetch2(next + 16L * k);
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k);
            var u = Vector256.Load(w0 + k);
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01);
            u = Vector256.Load(w1 + k);
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11);
            u = Vector256.Load(w2 + k);
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21);
            u = Vector256.Load(w3 + k);
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31);
        }
        float* y0 = y, y1 = y + ys;
        y0[0] = TailF32(Vector256.Sum(a00), w0, x0, end, cols); y1[0] = TailF32(Vector256.Sum(a01), w0, x1, end, cols);
        y0[1] = TailF32(Vector256.Sum(a10), w1, x0, end, cols); y1[1] = TailF32(Vector256.Sum(a11), w1, x1, end, cols);
        y0[2] = TailF32(Vector256.Sum(a20), w2, x0, end, cols); y1[2] = TailF32(Vector256.Sum(a21), w2, x1, end, cols);
        y0[3] = TailF32(Vector256.Sum(a30), w3, x0, end, cols); y1[3] = TailF32(Vector256.Sum(a31), w3, x1, end, cols);
    }

    /// <summary>y[i] for weight rows w + i · cols (i &lt; 8) and one input row.</summary>
    private static void TileF32x8x1(float* y, float* x, float* w, int cols)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols, w4 = w3 + cols, w5 = w4 + cols, w6 = w5 + cols, w7 = w6 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int end = cols & ~7;
        byte* next = (byte*)(w + 8L * cols);   // the next tile's eight rows, 256 bytes a step
        for (int k = 0; k < end; k += 8)
        {
            Prefetch2(next + 32L * k);
            Prefetch2(next + 32L * k + 128);
            var v = Vector256.Load(x + k);
            a0 = Fma.MultiplyAdd(Vector256.Load(w0 + k), v, a0);
            a1 = Fma.MultiplyAdd(Vector256.Load(w1 + k), v, a1);
            a2 = Fma.MultiplyAdd(Vector256.Load(w2 + k), v, a2);
            a3 = Fma.MultiplyAdd(Vector256.Load(w3 + k), v, a3);
            a4 = Fma.MultiplyAdd(Vector256.Load(w4 + k), v, a4);
            a5 = Fma.MultiplyAdd(Vector256.Load(w5 + k), v, a5);
            a6 = Fma.MultiplyAdd(Vector256.Load(w6 + k), v, a6);
            a7 = Fma.MultiplyAdd(Vector256.Load(w7 + k), v, a7);
        }
        y[0] = TailF32(Vector256.Sum(a0), w0, x, end, cols);
        y[1] = TailF32(Vector256.Sum(a1), w1, x, end, cols);
        y[2] = TailF32(Vector256.Sum(a2), w2, x, end, cols);
        y[3] = TailF32(Vector256.Sum(a3), w3, x, end, cols);
        y[4] = TailF32(Vector256.Sum(a4), w4, x, end, cols);
        y[5] = TailF32(Vector256.Sum(a5), w5, x, end, cols);
        y[6] = TailF32(Vector256.Sum(a6), w6, x, end, cols);
        y[7] = TailF32(Vector256.Sum(a7), w7, x, end, cols);
    }

    /// <summary>y[i] for weight rows w + i · cols (i &lt; 4) and one input row.</summary>
    private static void TileF32x4x1(float* y, float* x, float* w, int cols, byte* next)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
            if (next != null) Prefetch2(next + 16L * k);
            var v = Vector256.Load(x + k);
            a0 = Fma.MultiplyAdd(Vector256.Load(w0 + k), v, a0);
            a1 = Fma.MultiplyAdd(Vector256.Load(w1 + k), v, a1);
            a2 = Fma.MultiplyAdd(Vector256.Load(w2 + k), v, a2);
            a3 = Fma.MultiplyAdd(Vector256.Load(w3 + k), v, a3);
        }
        y[0] = TailF32(Vector256.Sum(a0), w0, x, end, cols);
        y[1] = TailF32(Vector256.Sum(a1), w1, x, end, cols);
        y[2] = TailF32(Vector256.Sum(a2), w2, x, end, cols);
        y[3] = TailF32(Vector256.Sum(a3), w3, x, end, cols);
    }

    /// <summary>16 bf16 columns as f32: the even ones (lane i: column 2i) and the odd ones (column 2i + 1), exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Even(Vector256<uint> u) => Vector256.ShiftLeft(u, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Odd(Vector256<uint> u) => (u & Vector256.Create(0xFFFF0000u)).AsSingle();

    /// <summary>One bf16 dot product with the tiles' arithmetic (edge rows): xs is x split by <see cref="SplitInputs"/>.</summary>
    private static float DotBF16Split(ushort* w, float* x, float* xs, int cols)
    {
        Vector256<float> a = default;
        int end = cols & ~15;
        for (int k = 0; k < end; k += 16)
        {
            var u = Vector256.Load((uint*)(w + k));
            a = Fma.MultiplyAdd(Even(u), Vector256.Load(xs + k), a);
            a = Fma.MultiplyAdd(Odd(u), Vector256.Load(xs + k + 8), a);
        }
        return TailBF16(Vector256.Sum(a), w, x, end, cols);
    }

    /// <summary>y[j · ys + i] for weight rows w + i · cols (i &lt; 4) and input rows j &lt; 3 (x raw, xs split).</summary>
    private static void TileBF16x4x3(float* y, int ys, float* x, float* xs, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = xs, x1 = x0 + cols, x2 = x1 + cols;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int end = cols & ~15;
        byte* next = (byte*)(w + 4L * cols);   // the next tile's four rows, 128 bytes a step
        for (int k = 0; k < end; k += 16)
        {
            Prefetch2(next + 8L * k);
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k); var v2 = Vector256.Load(x2 + k);
            var u = Even(Vector256.Load((uint*)(w0 + k)));
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01); a02 = Fma.MultiplyAdd(u, v2, a02);
            u = Even(Vector256.Load((uint*)(w1 + k)));
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11); a12 = Fma.MultiplyAdd(u, v2, a12);
            u = Even(Vector256.Load((uint*)(w2 + k)));
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21); a22 = Fma.MultiplyAdd(u, v2, a22);
            u = Even(Vector256.Load((uint*)(w3 + k)));
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31); a32 = Fma.MultiplyAdd(u, v2, a32);
            v0 = Vector256.Load(x0 + k + 8); v1 = Vector256.Load(x1 + k + 8); v2 = Vector256.Load(x2 + k + 8);
            u = Odd(Vector256.Load((uint*)(w0 + k)));
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01); a02 = Fma.MultiplyAdd(u, v2, a02);
            u = Odd(Vector256.Load((uint*)(w1 + k)));
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11); a12 = Fma.MultiplyAdd(u, v2, a12);
            u = Odd(Vector256.Load((uint*)(w2 + k)));
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21); a22 = Fma.MultiplyAdd(u, v2, a22);
            u = Odd(Vector256.Load((uint*)(w3 + k)));
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31); a32 = Fma.MultiplyAdd(u, v2, a32);
        }
        float* r0 = x, r1 = x + cols, r2 = r1 + cols;
        float* y0 = y, y1 = y + ys, y2 = y1 + ys;
        y0[0] = TailBF16(Vector256.Sum(a00), w0, r0, end, cols); y1[0] = TailBF16(Vector256.Sum(a01), w0, r1, end, cols); y2[0] = TailBF16(Vector256.Sum(a02), w0, r2, end, cols);
        y0[1] = TailBF16(Vector256.Sum(a10), w1, r0, end, cols); y1[1] = TailBF16(Vector256.Sum(a11), w1, r1, end, cols); y2[1] = TailBF16(Vector256.Sum(a12), w1, r2, end, cols);
        y0[2] = TailBF16(Vector256.Sum(a20), w2, r0, end, cols); y1[2] = TailBF16(Vector256.Sum(a21), w2, r1, end, cols); y2[2] = TailBF16(Vector256.Sum(a22), w2, r2, end, cols);
        y0[3] = TailBF16(Vector256.Sum(a30), w3, r0, end, cols); y1[3] = TailBF16(Vector256.Sum(a31), w3, r1, end, cols); y2[3] = TailBF16(Vector256.Sum(a32), w3, r2, end, cols);
    }

    /// <summary><see cref="TileBF16x4x3"/> for two input rows (the batch's last two).</summary>
    private static void TileBF16x4x2(float* y, int ys, float* x, float* xs, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = xs, x1 = x0 + cols;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        int end = cols & ~15;
        byte* next = (byte*)(w + 4L * cols);   // the next tile's four rows, 128 bytes a step
        for (int k = 0; k < end; k += 16)
        {
            Prefetch2(next + 8L * k);
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k);
            var u = Even(Vector256.Load((uint*)(w0 + k)));
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01);
            u = Even(Vector256.Load((uint*)(w1 + k)));
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11);
            u = Even(Vector256.Load((uint*)(w2 + k)));
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21);
            u = Even(Vector256.Load((uint*)(w3 + k)));
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31);
            v0 = Vector256.Load(x0 + k + 8); v1 = Vector256.Load(x1 + k + 8);
            u = Odd(Vector256.Load((uint*)(w0 + k)));
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01);
            u = Odd(Vector256.Load((uint*)(w1 + k)));
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11);
            u = Odd(Vector256.Load((uint*)(w2 + k)));
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21);
            u = Odd(Vector256.Load((uint*)(w3 + k)));
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31);
        }
        float* r0 = x, r1 = x + cols;
        float* y0 = y, y1 = y + ys;
        y0[0] = TailBF16(Vector256.Sum(a00), w0, r0, end, cols); y1[0] = TailBF16(Vector256.Sum(a01), w0, r1, end, cols);
        y0[1] = TailBF16(Vector256.Sum(a10), w1, r0, end, cols); y1[1] = TailBF16(Vector256.Sum(a11), w1, r1, end, cols);
        y0[2] = TailBF16(Vector256.Sum(a20), w2, r0, end, cols); y1[2] = TailBF16(Vector256.Sum(a21), w2, r1, end, cols);
        y0[3] = TailBF16(Vector256.Sum(a30), w3, r0, end, cols); y1[3] = TailBF16(Vector256.Sum(a31), w3, r1, end, cols);
    }

    private static void TileBF16x8x1(float* y, float* x, float* xs, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols, w4 = w3 + cols, w5 = w4 + cols, w6 = w5 + cols, w7 = w6 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int end = cols & ~15;
        byte* next = (byte*)(w + 8L * cols);   // the next tile's eight rows: 256 bytes of them per step, as this tile reads
        for (int k = 0; k < end; k += 16)
        {
            Prefetch2(next + 16L * k);
            Prefetch2(next + 16L * k + 128);
            var e = Vector256.Load(xs + k);
            var o = Vector256.Load(xs + k + 8);
            var u = Vector256.Load((uint*)(w0 + k)); a0 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a0));
            u = Vector256.Load((uint*)(w1 + k)); a1 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a1));
            u = Vector256.Load((uint*)(w2 + k)); a2 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a2));
            u = Vector256.Load((uint*)(w3 + k)); a3 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a3));
            u = Vector256.Load((uint*)(w4 + k)); a4 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a4));
            u = Vector256.Load((uint*)(w5 + k)); a5 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a5));
            u = Vector256.Load((uint*)(w6 + k)); a6 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a6));
            u = Vector256.Load((uint*)(w7 + k)); a7 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a7));
        }
        y[0] = TailBF16(Vector256.Sum(a0), w0, x, end, cols);
        y[1] = TailBF16(Vector256.Sum(a1), w1, x, end, cols);
        y[2] = TailBF16(Vector256.Sum(a2), w2, x, end, cols);
        y[3] = TailBF16(Vector256.Sum(a3), w3, x, end, cols);
        y[4] = TailBF16(Vector256.Sum(a4), w4, x, end, cols);
        y[5] = TailBF16(Vector256.Sum(a5), w5, x, end, cols);
        y[6] = TailBF16(Vector256.Sum(a6), w6, x, end, cols);
        y[7] = TailBF16(Vector256.Sum(a7), w7, x, end, cols);
    }

    private static void TileBF16x4x1(float* y, float* x, float* xs, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int end = cols & ~15;
        byte* next = (byte*)(w + 4L * cols);   // the next tile's four rows, 128 bytes a step
        for (int k = 0; k < end; k += 16)
        {
            Prefetch2(next + 8L * k);
            var e = Vector256.Load(xs + k);
            var o = Vector256.Load(xs + k + 8);
            var u = Vector256.Load((uint*)(w0 + k)); a0 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a0));
            u = Vector256.Load((uint*)(w1 + k)); a1 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a1));
            u = Vector256.Load((uint*)(w2 + k)); a2 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a2));
            u = Vector256.Load((uint*)(w3 + k)); a3 = Fma.MultiplyAdd(Odd(u), o, Fma.MultiplyAdd(Even(u), e, a3));
        }
        y[0] = TailBF16(Vector256.Sum(a0), w0, x, end, cols);
        y[1] = TailBF16(Vector256.Sum(a1), w1, x, end, cols);
        y[2] = TailBF16(Vector256.Sum(a2), w2, x, end, cols);
        y[3] = TailBF16(Vector256.Sum(a3), w3, x, end, cols);
    }
}
