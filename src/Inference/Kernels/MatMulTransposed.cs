using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>The backward product through a frozen weight: y = x W, y[b, k] = Σ_r x[b, r] · W[r, k], for W [rows, cols]
/// (HF layout [out, in]) read where it lives (memory-mapped or packed, F32 or BF16), never copied. x is (n, rows), y is
/// (n, cols); y is overwritten. Each output is summed over the rows of W in order by one thread: the result does not
/// depend on the number of cores.</summary>
public static unsafe class MatMulTransposedKernel
{
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
            if (level >= SimdLevel.Vector256 && MatMulTransposedBlocked.Supports(w))
            {
                MatMulTransposedBlocked.Forward(yp, xp, w, n);
                return;
            }
            nint ya = (nint)yp, xa = (nint)xp;
            int blocks = (w.Cols + 15) / 16;
            long work = (long)n * w.Rows * w.Cols;
            void Block(int kb) => RowMajorBlock((float*)ya, (float*)xa, w, n, kb * 16, Math.Min(16, w.Cols - kb * 16), level);
            if (work < 1 << 16 || blocks == 1) for (int kb = 0; kb < blocks; kb++) Block(kb);
            else Parallel.For(0, blocks, Block);
        }
    }

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
