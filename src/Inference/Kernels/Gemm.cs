using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>AVX-512 GEMM on f32 row-major operands: y (n, cols) = [y +] x (n, k) · W (k, cols), every operand with its
/// own row stride. Register tiles of 8 rows × 32 columns (16 accumulators; one broadcast of x per row and step of k,
/// two loads of W) or 8 × 16 for narrow outputs; W is read in place, k in blocks of <see cref="KC"/>. Tasks are (block
/// of 32 columns, block of rows) pairs. Every output is one fused multiply-add chain over k in ascending order (kept in
/// memory between k blocks), starting from zero or from y: the result of a row does not depend on the other rows, the
/// split into tasks or the number of cores. The scalar twins are the callers' naive kernels.</summary>
internal static unsafe partial class Gemm
{
    public const int NR = 32;    // output columns per tile (two vectors)
    public const int KC = 256;   // steps of k per block
    public const int MR = 8;     // rows per tile

    /// <summary>AVX-512, or AVX2 with FMA (the 256-bit tiles of Gemm.Avx2.cs, bitwise the same results).</summary>
    public static bool Supported => Avx512F.IsSupported || Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Whether the 512-bit tiles run (else the 256-bit ones).</summary>
    private static readonly bool Wide = Avx512F.IsSupported;

    /// <summary>y (n, cols; stride ys) = [y +] x (n, k; stride xs) · W (k, cols; stride ws).</summary>
    /// <param name="serial">On the calling thread whatever the size (a chunk's few rows: cheaper than waking the pool).</param>
    public static void RowMajor(float* y, int ys, float* x, int xs, float* w, int ws, int n, int k, int cols, bool accumulate, bool serial = false)
    {
        if (n <= 0 || cols <= 0) return;
        int colBlocks = (cols + NR - 1) / NR;
        // enough tasks for every core: split the rows (in whole tiles) when there are few column blocks
        int want = Environment.ProcessorCount * 2;
        int rowBlocks = Math.Clamp(want / colBlocks, 1, Math.Max(1, n / (4 * MR)));
        int rowsPer = (n + rowBlocks - 1) / rowBlocks;
        rowsPer = (rowsPer + MR - 1) / MR * MR;
        rowBlocks = (n + rowsPer - 1) / rowsPer;
        int tasks = colBlocks * rowBlocks;
        long work = (long)n * k * cols;
        nint ya = (nint)y, xa = (nint)x, wa = (nint)w;
        void Task(int t)
        {
            int cb = t % colBlocks, rb = t / colBlocks;
            int b0 = rb * rowsPer, b1 = Math.Min(n, b0 + rowsPer), k0 = cb * NR;
            Block((float*)ya, ys, (float*)xa, xs, (float*)wa, ws, b0, b1, k, k0, Math.Min(NR, cols - k0), accumulate);
        }
        if (serial || work < 1 << 17 || tasks == 1) for (int t = 0; t < tasks; t++) Task(t);
        else Parallel.For(0, tasks, Task);
    }

    [ThreadStatic] private static float[]? _pad;   // (KC, NR) zero-padded copy of a partial column block

    /// <summary>Rows [b0, b1) × columns [k0, k0 + width) of the product.</summary>
    private static void Block(float* y, int ys, float* x, int xs, float* w, int ws, int b0, int b1, int k, int k0, int width, bool accumulate)
    {
        for (int r0 = 0; r0 < k; r0 += KC)
        {
            int kc = Math.Min(KC, k - r0);
            bool first = !accumulate && r0 == 0;
            float* p = w + (long)r0 * ws + k0;
            if (width == NR || width == 16)
            {
                Rows(y + k0, ys, x + r0, xs, p, ws, b0, b1, kc, first, width == 16);
                continue;
            }
            _pad ??= GC.AllocateArray<float>(KC * NR, pinned: true);
            fixed (float* pad = _pad)
            {
                for (int r = 0; r < kc; r++)
                    for (int j = 0; j < NR; j++) pad[r * NR + j] = j < width ? p[(long)r * ws + j] : 0;
                PartialRows(y + k0, ys, x + r0, xs, pad, b0, b1, kc, width, first);
            }
        }
    }

    /// <summary>Full tiles of rows [b0, b1): y (+)= x · p over kc steps, 32 or 16 (narrow) columns.</summary>
    public static void Rows(float* y, int ys, float* x, int xs, float* p, int ps, int b0, int b1, int kc, bool first, bool narrow)
    {
        int b = b0;
        for (; b + MR <= b1; b += MR)
        {
            if (narrow) Tile8x16(y + (long)b * ys, ys, x + (long)b * xs, xs, p, ps, kc, first);
            else Tile8(y + (long)b * ys, ys, x + (long)b * xs, xs, p, ps, kc, first);
        }
        for (; b < b1; b++) Tile1(y + (long)b * ys, x + (long)b * xs, p, ps, kc, first, narrow);
    }

    /// <summary>Rows [b0, b1) of a column block narrower than the tile: through a full-width tile on the stack, so no
    /// load or store leaves the row. p: (kc, NR) zero-padded.</summary>
    public static void PartialRows(float* y, int ys, float* x, int xs, float* p, int b0, int b1, int kc, int width, bool first)
    {
        float* tile = stackalloc float[MR * NR];   // (MR, NR)
        for (int b = b0; b < b1; b += MR)
        {
            int m = Math.Min(MR, b1 - b);
            for (int i = 0; i < m; i++)
            {
                float* yr = y + (long)(b + i) * ys;
                for (int j = 0; j < NR; j++) tile[i * NR + j] = j < width && !first ? yr[j] : 0;
            }
            if (m == MR) Tile8(tile, NR, x + (long)b * xs, xs, p, NR, kc, first);
            else for (int i = 0; i < m; i++) Tile1(tile + i * NR, x + (long)(b + i) * xs, p, NR, kc, first, narrow: false);
            for (int i = 0; i < m; i++)
            {
                float* yr = y + (long)(b + i) * ys;
                for (int j = 0; j < width; j++) yr[j] = tile[i * NR + j];
            }
        }
    }

    /// <summary>y (8 rows at stride ys, 32 columns) (+)= x (8 rows at stride xs, kc) · p (kc rows at stride ps, 32).</summary>
    private static void Tile8(float* y, int ys, float* x, int xs, float* p, int ps, int kc, bool first)
    {
        if (!Wide)
        {
            Tile4x16(y, ys, x, xs, p, ps, kc, first);
            Tile4x16(y + 16, ys, x, xs, p + 16, ps, kc, first);
            Tile4x16(y + 4 * ys, ys, x + 4 * xs, xs, p, ps, kc, first);
            Tile4x16(y + 4 * ys + 16, ys, x + 4 * xs, xs, p + 16, ps, kc, first);
            return;
        }
        Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7;
        if (first)
        {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = default;
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = default;
        }
        else
        {
            a0 = Vector512.Load(y); c0 = Vector512.Load(y + 16);
            a1 = Vector512.Load(y + ys); c1 = Vector512.Load(y + ys + 16);
            a2 = Vector512.Load(y + 2 * ys); c2 = Vector512.Load(y + 2 * ys + 16);
            a3 = Vector512.Load(y + 3 * ys); c3 = Vector512.Load(y + 3 * ys + 16);
            a4 = Vector512.Load(y + 4 * ys); c4 = Vector512.Load(y + 4 * ys + 16);
            a5 = Vector512.Load(y + 5 * ys); c5 = Vector512.Load(y + 5 * ys + 16);
            a6 = Vector512.Load(y + 6 * ys); c6 = Vector512.Load(y + 6 * ys + 16);
            a7 = Vector512.Load(y + 7 * ys); c7 = Vector512.Load(y + 7 * ys + 16);
        }
        float* x0 = x, x1 = x + xs, x2 = x + 2 * xs, x3 = x + 3 * xs, x4 = x + 4 * xs, x5 = x + 5 * xs, x6 = x + 6 * xs, x7 = x + 7 * xs;
        for (int r = 0; r < kc; r++)
        {
            float* pr = p + (long)r * ps;
            var u = Vector512.Load(pr);
            var v = Vector512.Load(pr + 16);
            var s = Vector512.Create(x0[r]); a0 = Vector512.FusedMultiplyAdd(s, u, a0); c0 = Vector512.FusedMultiplyAdd(s, v, c0);
            s = Vector512.Create(x1[r]); a1 = Vector512.FusedMultiplyAdd(s, u, a1); c1 = Vector512.FusedMultiplyAdd(s, v, c1);
            s = Vector512.Create(x2[r]); a2 = Vector512.FusedMultiplyAdd(s, u, a2); c2 = Vector512.FusedMultiplyAdd(s, v, c2);
            s = Vector512.Create(x3[r]); a3 = Vector512.FusedMultiplyAdd(s, u, a3); c3 = Vector512.FusedMultiplyAdd(s, v, c3);
            s = Vector512.Create(x4[r]); a4 = Vector512.FusedMultiplyAdd(s, u, a4); c4 = Vector512.FusedMultiplyAdd(s, v, c4);
            s = Vector512.Create(x5[r]); a5 = Vector512.FusedMultiplyAdd(s, u, a5); c5 = Vector512.FusedMultiplyAdd(s, v, c5);
            s = Vector512.Create(x6[r]); a6 = Vector512.FusedMultiplyAdd(s, u, a6); c6 = Vector512.FusedMultiplyAdd(s, v, c6);
            s = Vector512.Create(x7[r]); a7 = Vector512.FusedMultiplyAdd(s, u, a7); c7 = Vector512.FusedMultiplyAdd(s, v, c7);
        }
        a0.Store(y); c0.Store(y + 16);
        a1.Store(y + ys); c1.Store(y + ys + 16);
        a2.Store(y + 2 * ys); c2.Store(y + 2 * ys + 16);
        a3.Store(y + 3 * ys); c3.Store(y + 3 * ys + 16);
        a4.Store(y + 4 * ys); c4.Store(y + 4 * ys + 16);
        a5.Store(y + 5 * ys); c5.Store(y + 5 * ys + 16);
        a6.Store(y + 6 * ys); c6.Store(y + 6 * ys + 16);
        a7.Store(y + 7 * ys); c7.Store(y + 7 * ys + 16);
    }

    /// <summary>y (8 rows, 16 columns) (+)= x (8 rows, kc) · p (kc, 16): the narrow tile (rank-16 LoRA products).</summary>
    private static void Tile8x16(float* y, int ys, float* x, int xs, float* p, int ps, int kc, bool first)
    {
        if (!Wide)
        {
            Tile4x16(y, ys, x, xs, p, ps, kc, first);
            Tile4x16(y + 4 * ys, ys, x + 4 * xs, xs, p, ps, kc, first);
            return;
        }
        Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7;
        if (first) a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = default;
        else
        {
            a0 = Vector512.Load(y); a1 = Vector512.Load(y + ys); a2 = Vector512.Load(y + 2 * ys); a3 = Vector512.Load(y + 3 * ys);
            a4 = Vector512.Load(y + 4 * ys); a5 = Vector512.Load(y + 5 * ys); a6 = Vector512.Load(y + 6 * ys); a7 = Vector512.Load(y + 7 * ys);
        }
        float* x0 = x, x1 = x + xs, x2 = x + 2 * xs, x3 = x + 3 * xs, x4 = x + 4 * xs, x5 = x + 5 * xs, x6 = x + 6 * xs, x7 = x + 7 * xs;
        for (int r = 0; r < kc; r++)
        {
            var u = Vector512.Load(p + (long)r * ps);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(x0[r]), u, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(x1[r]), u, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(x2[r]), u, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(x3[r]), u, a3);
            a4 = Vector512.FusedMultiplyAdd(Vector512.Create(x4[r]), u, a4);
            a5 = Vector512.FusedMultiplyAdd(Vector512.Create(x5[r]), u, a5);
            a6 = Vector512.FusedMultiplyAdd(Vector512.Create(x6[r]), u, a6);
            a7 = Vector512.FusedMultiplyAdd(Vector512.Create(x7[r]), u, a7);
        }
        a0.Store(y); a1.Store(y + ys); a2.Store(y + 2 * ys); a3.Store(y + 3 * ys);
        a4.Store(y + 4 * ys); a5.Store(y + 5 * ys); a6.Store(y + 6 * ys); a7.Store(y + 7 * ys);
    }

    /// <summary>One row: the same chain per output as the 8-row tiles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile1(float* y, float* x, float* p, int ps, int kc, bool first, bool narrow)
    {
        if (!Wide)
        {
            Tile1x16(y, x, p, ps, kc, first);
            if (!narrow) Tile1x16(y + 16, x, p + 16, ps, kc, first);
            return;
        }
        if (narrow)
        {
            Vector512<float> a = first ? default : Vector512.Load(y);
            for (int r = 0; r < kc; r++) a = Vector512.FusedMultiplyAdd(Vector512.Create(x[r]), Vector512.Load(p + (long)r * ps), a);
            a.Store(y);
            return;
        }
        Vector512<float> a0 = first ? default : Vector512.Load(y), c0 = first ? default : Vector512.Load(y + 16);
        for (int r = 0; r < kc; r++)
        {
            var s = Vector512.Create(x[r]);
            float* pr = p + (long)r * ps;
            a0 = Vector512.FusedMultiplyAdd(s, Vector512.Load(pr), a0);
            c0 = Vector512.FusedMultiplyAdd(s, Vector512.Load(pr + 16), c0);
        }
        a0.Store(y);
        c0.Store(y + 16);
    }
}
