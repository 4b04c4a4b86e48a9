using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>The blocked path of <see cref="MatMulTransposedKernel"/> (AVX-512, or AVX2 with FMA): y (n, cols) = x (n, rows) · W (rows, cols), blocked
/// as a GEMM (<see cref="Gemm"/>). Row-major f32 weights are read in place. Otherwise each task owns a block of 32
/// output columns; for each block of <see cref="KC"/> rows of W it copies W[r0.., k0..k0+32] as f32 into a per-thread
/// panel (KC, 32) (gathered from packed panels, widened from BF16, dequantized from Q8), then runs the 8×32 register tiles over every group
/// of 8 input rows. The panel is reused by all n input rows, so the copy costs
/// 1/n of the products. Every output is one fused multiply-add chain over the rows of W in ascending order (kept in
/// memory between row blocks), whatever the tile, the task split or the number of cores: the results are bitwise the
/// same for a given input row whatever else is in the batch.</summary>
internal static unsafe class MatMulTransposedBlocked
{
    private const int NR = Gemm.NR;   // output columns per task (two vectors)
    private const int KC = Gemm.KC;   // rows of W per panel (a multiple of the 16-row packed panels)

    [ThreadStatic] private static float[]? _panel;   // (KC, NR) f32 copy of a block of W, pinned

    public static bool Supports(WeightMatrix w) => Gemm.Supported && Avx2.IsSupported && w.Cols > 0 && w.Rows > 0;

    public static void Forward(float* y, float* x, WeightMatrix w, int n)
    {
        if (!w.Packed && w.Type == WeightType.F32)
        {
            // row-major f32: the rows of W are read in place
            Gemm.RowMajor(y, w.Cols, x, w.Rows, (float*)w.Data, w.Cols, n, w.Rows, w.Cols, accumulate: false);
            return;
        }
        int blocks = (w.Cols + NR - 1) / NR;
        long work = (long)n * w.Rows * w.Cols;
        nint ya = (nint)y, xa = (nint)x;
        int chunks = Math.Min(blocks, Environment.ProcessorCount * 4);
        if (work < 1 << 18 || chunks <= 1)
        {
            for (int j = 0; j < blocks; j++) ColumnBlock(y, x, w, n, j * NR);
            return;
        }
        Parallel.For(0, chunks, c =>
        {
            int a = (int)((long)blocks * c / chunks), b = (int)((long)blocks * (c + 1) / chunks);
            for (int j = a; j < b; j++) ColumnBlock((float*)ya, (float*)xa, w, n, j * NR);
        });
    }

    private static void ColumnBlock(float* y, float* x, WeightMatrix w, int n, int k0)
    {
        int rows = w.Rows, cols = w.Cols, width = Math.Min(NR, cols - k0);
        _panel ??= GC.AllocateArray<float>(KC * NR, pinned: true);
        fixed (float* p = _panel)
        {
            for (int r0 = 0; r0 < rows; r0 += KC)
            {
                int kc = Math.Min(KC, rows - r0);
                Pack(p, w, r0, kc, k0, width);
                if (width == NR) Gemm.Rows(y + k0, cols, x + r0, rows, p, NR, 0, n, kc, first: r0 == 0, narrow: false);
                else Gemm.PartialRows(y + k0, cols, x + r0, rows, p, 0, n, kc, width, first: r0 == 0);
            }
        }
    }

    /// <summary>p (kc, NR) = W[r0..r0+kc, k0..k0+width] as f32, zero past width.</summary>
    private static void Pack(float* p, WeightMatrix w, int r0, int kc, int k0, int width)
    {
        int cols = w.Cols;
        if (w.Type == WeightType.Q8 && k0 % Q8Layout.Block == 0)
        {
            // one block of 32 columns per row, dequantized (the padding past the last column is stored as zero)
            for (int r = 0; r < kc; r++)
            {
                byte* blk = Q8Layout.BlockAt((byte*)w.Data, cols, r0 + r, k0 / Q8Layout.Block);
                int i = (r0 + r) % Q8Layout.Rows;
                float scale = Q8Layout.BlockScale(blk, i);
                for (int j = 0; j < NR; j++) p[r * NR + j] = (blk[Q8Layout.ValueOffset(i, j)] - 128) * scale;
            }
            return;
        }
        bool f32 = w.Type == WeightType.F32;
        if (w.Packed && width == NR)
        {
            // element (r, k) at (r/16)·16·cols + k·16 + r%16: a row's 16 consecutive columns are 16 floats apart
            var idx = Vector256.Create(0, 16, 32, 48, 64, 80, 96, 112);
            var high = Vector256.Create(unchecked((int)0xFFFF0000));
            for (int r = 0; r < kc; r++)
            {
                int row = r0 + r;
                long at = (long)(row >> 4) * 16 * cols + (long)k0 * 16 + (row & 15);
                float* dst = p + r * NR;
                if (f32)
                {
                    float* src = (float*)w.Data + at;
                    for (int q = 0; q < 4; q++) Avx2.GatherVector256(src + q * 128, idx, 4).Store(dst + q * 8);
                }
                else
                {
                    // the dword that ends with a bf16 holds it in its high half (read from one element before, never
                    // past the matrix's end): with the low half cleared it is the f32
                    var src = (int*)((ushort*)w.Data + at - 1);
                    for (int q = 0; q < 4; q++) (Avx2.GatherVector256(src + q * 64, idx, 2) & high).AsSingle().Store(dst + q * 8);
                }
            }
            return;
        }
        if (!w.Packed && width == NR)
        {
            for (int r = 0; r < kc; r++)
            {
                long at = (long)(r0 + r) * cols + k0;
                float* dst = p + r * NR;
                if (f32)
                    for (int q = 0; q < NR; q += 8) Vector256.Load((float*)w.Data + at + q).Store(dst + q);
                else
                    for (int q = 0; q < NR; q += 16)
                    {
                        var u = Vector256.Load((ushort*)w.Data + at + q);
                        Vector256.ShiftLeft(Vector256.WidenLower(u), 16).AsSingle().Store(dst + q);
                        Vector256.ShiftLeft(Vector256.WidenUpper(u), 16).AsSingle().Store(dst + q + 8);
                    }
            }
            return;
        }
        for (int r = 0; r < kc; r++)
            for (int j = 0; j < NR; j++) p[r * NR + j] = j < width ? w.At(r0 + r, k0 + j) : 0;
    }
}
