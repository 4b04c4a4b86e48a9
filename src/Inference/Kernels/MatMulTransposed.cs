using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>The backward product through a frozen weight: y = x W, y[b, k] = Σ_r x[b, r] · W[r, k], for W [rows, cols]
/// (HF layout [out, in]) read where it lives (memory-mapped or packed, F32 or BF16), never copied. x is (n, rows), y is
/// (n, cols); y is overwritten. Parallel over blocks of 16 output columns, so each output is summed by one thread in a
/// fixed order: the result does not depend on the number of cores.</summary>
public static unsafe class MatMulTransposedKernel
{
    private const int PanelChunk = 64;   // panels (1,024 weight rows) whose 16-column block stays hot while all inputs pass

    public static void Forward(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n, SimdLevel level)
    {
        if (x.Length < (long)n * w.Rows || y.Length < (long)n * w.Cols)
            throw new ArgumentException($"transposed matmul buffers too small for n={n}, W=[{w.Rows},{w.Cols}]");
        if (level == SimdLevel.Scalar)
        {
            Naive(y, x, w, n);
            return;
        }
        fixed (float* yp = y)
        fixed (float* xp = x)
        {
            nint ya = (nint)yp, xa = (nint)xp;
            int blocks = (w.Cols + 15) / 16;
            bool packed512 = w.Packed && level == SimdLevel.Vector512 && Avx512F.IsSupported && w.Cols % 16 == 0;
            long work = (long)n * w.Rows * w.Cols;
            void Block(int kb)
            {
                if (packed512) PackedBlock((float*)ya, (float*)xa, w, n, kb * 16);
                else RowMajorBlock((float*)ya, (float*)xa, w, n, kb * 16, Math.Min(16, w.Cols - kb * 16), level);
            }
            if (work < 1 << 16 || blocks == 1) for (int kb = 0; kb < blocks; kb++) Block(kb);
            else Parallel.For(0, blocks, Block);
        }
    }

    /// <summary>Columns [k0, k0+16) of a packed matrix: for each chunk of panels and each input row, 16 accumulators
    /// (one per output column, lanes over the panel's 16 rows) summed across the chunk, then reduced and added.</summary>
    private static void PackedBlock(float* y, float* x, WeightMatrix w, int n, int k0)
    {
        int rows = w.Rows, cols = w.Cols, panels = rows / WeightMatrix.PanelRows;
        bool f32 = w.Type == WeightType.F32;
        for (int b = 0; b < n; b++) new Span<float>(y + (long)b * cols + k0, 16).Clear();
        for (int p0 = 0; p0 < panels; p0 += PanelChunk)
        {
            int p1 = Math.Min(panels, p0 + PanelChunk);
            for (int b = 0; b < n; b++)
            {
                float* xb = x + (long)b * rows;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                Vector512<float> a8 = default, a9 = default, a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
                for (int p = p0; p < p1; p++)
                {
                    var xv = Vector512.Load(xb + p * 16);
                    long at = (long)p * 16 * cols + (long)k0 * 16;
                    if (f32)
                    {
                        float* wp = (float*)w.Data + at;
                        a0 = Vector512.FusedMultiplyAdd(Vector512.Load(wp), xv, a0);
                        a1 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 16), xv, a1);
                        a2 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 32), xv, a2);
                        a3 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 48), xv, a3);
                        a4 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 64), xv, a4);
                        a5 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 80), xv, a5);
                        a6 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 96), xv, a6);
                        a7 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 112), xv, a7);
                        a8 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 128), xv, a8);
                        a9 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 144), xv, a9);
                        a10 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 160), xv, a10);
                        a11 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 176), xv, a11);
                        a12 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 192), xv, a12);
                        a13 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 208), xv, a13);
                        a14 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 224), xv, a14);
                        a15 = Vector512.FusedMultiplyAdd(Vector512.Load(wp + 240), xv, a15);
                    }
                    else
                    {
                        ushort* wp = (ushort*)w.Data + at;
                        a0 = Vector512.FusedMultiplyAdd(Widen(wp), xv, a0);
                        a1 = Vector512.FusedMultiplyAdd(Widen(wp + 16), xv, a1);
                        a2 = Vector512.FusedMultiplyAdd(Widen(wp + 32), xv, a2);
                        a3 = Vector512.FusedMultiplyAdd(Widen(wp + 48), xv, a3);
                        a4 = Vector512.FusedMultiplyAdd(Widen(wp + 64), xv, a4);
                        a5 = Vector512.FusedMultiplyAdd(Widen(wp + 80), xv, a5);
                        a6 = Vector512.FusedMultiplyAdd(Widen(wp + 96), xv, a6);
                        a7 = Vector512.FusedMultiplyAdd(Widen(wp + 112), xv, a7);
                        a8 = Vector512.FusedMultiplyAdd(Widen(wp + 128), xv, a8);
                        a9 = Vector512.FusedMultiplyAdd(Widen(wp + 144), xv, a9);
                        a10 = Vector512.FusedMultiplyAdd(Widen(wp + 160), xv, a10);
                        a11 = Vector512.FusedMultiplyAdd(Widen(wp + 176), xv, a11);
                        a12 = Vector512.FusedMultiplyAdd(Widen(wp + 192), xv, a12);
                        a13 = Vector512.FusedMultiplyAdd(Widen(wp + 208), xv, a13);
                        a14 = Vector512.FusedMultiplyAdd(Widen(wp + 224), xv, a14);
                        a15 = Vector512.FusedMultiplyAdd(Widen(wp + 240), xv, a15);
                    }
                }
                float* yb = y + (long)b * cols + k0;
                yb[0] += Vector512.Sum(a0); yb[1] += Vector512.Sum(a1); yb[2] += Vector512.Sum(a2); yb[3] += Vector512.Sum(a3);
                yb[4] += Vector512.Sum(a4); yb[5] += Vector512.Sum(a5); yb[6] += Vector512.Sum(a6); yb[7] += Vector512.Sum(a7);
                yb[8] += Vector512.Sum(a8); yb[9] += Vector512.Sum(a9); yb[10] += Vector512.Sum(a10); yb[11] += Vector512.Sum(a11);
                yb[12] += Vector512.Sum(a12); yb[13] += Vector512.Sum(a13); yb[14] += Vector512.Sum(a14); yb[15] += Vector512.Sum(a15);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(ushort* p) =>
        Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    /// <summary>Columns [k0, k0+width) of a row-major matrix (or any matrix at Vector256): y[b, k0..] = Σ_r x[b, r] W[r, k0..],
    /// two input rows per pass, rows of W read as vectors.</summary>
    private static void RowMajorBlock(float* y, float* x, WeightMatrix w, int n, int k0, int width, SimdLevel level)
    {
        int rows = w.Rows, cols = w.Cols;
        Span<float> acc = stackalloc float[16];
        for (int b = 0; b < n; b++)
        {
            float* xb = x + (long)b * rows;
            Vector256<float> lo = default, hi = default;
            acc.Clear();
            for (int r = 0; r < rows; r++)
            {
                float xv = xb[r];
                if (width == 16 && !w.Packed)
                {
                    Vector256<float> w0, w1;
                    if (w.Type == WeightType.F32)
                    {
                        float* wp = (float*)w.Data + (long)r * cols + k0;
                        w0 = Vector256.Load(wp);
                        w1 = Vector256.Load(wp + 8);
                    }
                    else
                    {
                        var u = Vector256.Load((ushort*)w.Data + (long)r * cols + k0);
                        w0 = Vector256.ShiftLeft(Vector256.WidenLower(u), 16).AsSingle();
                        w1 = Vector256.ShiftLeft(Vector256.WidenUpper(u), 16).AsSingle();
                    }
                    var xs = Vector256.Create(xv);
                    lo = Vector256.FusedMultiplyAdd(w0, xs, lo);
                    hi = Vector256.FusedMultiplyAdd(w1, xs, hi);
                }
                else
                    for (int j = 0; j < width; j++) acc[j] += w.At(r, k0 + j) * xv;
            }
            float* yb = y + (long)b * cols + k0;
            if (width == 16 && !w.Packed)
            {
                lo.Store(yb);
                hi.Store(yb + 8);
            }
            else
                for (int j = 0; j < width; j++) yb[j] = acc[j];
        }
    }

    /// <summary>The plain scalar twin: y[b, k] = Σ_r x[b, r] · W[r, k], one multiply-add at a time.</summary>
    public static void Naive(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        for (int b = 0; b < n; b++)
            for (int k = 0; k < w.Cols; k++)
            {
                float s = 0;
                for (int r = 0; r < w.Rows; r++) s += x[b * w.Rows + r] * w.At(r, k);
                y[b * w.Cols + k] = s;
            }
    }
}
