using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
            if (level == SimdLevel.Vector512 && Avx512F.IsSupported && w.Cols % Cols8 == 0)
            {
                Lanes(yp, xp, w, n);
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

    private const int Cols8 = 8;     // output columns per task
    private const int Lanes32 = 32;  // input rows per task (two vectors of 16)

    [ThreadStatic] private static float[]? _xT;

    /// <summary>The AVX-512 path: x transposed once to xT (rows, n rounded up to 32) so that 32 input rows sit in two
    /// vectors; each task computes 8 output columns × 32 input rows with 16 accumulators, broadcasting one weight per
    /// (row of W, column) and reading W where it lives (packed panels or row-major, F32 or BF16). Tasks are (row block,
    /// column group) pairs; each output is summed over the rows of W in order by one thread.</summary>
    private static void Lanes(float* y, float* x, WeightMatrix w, int n)
    {
        int rows = w.Rows, cols = w.Cols, nPad = (n + Lanes32 - 1) / Lanes32 * Lanes32;
        long size = (long)rows * nPad;
        if (_xT == null || _xT.Length < size) _xT = GC.AllocateArray<float>((int)Math.Max(size, 4096), pinned: true);
        fixed (float* xt = _xT)
        {
            // transposed in 16×32 tiles, padding rows zeroed
            for (int r0 = 0; r0 < rows; r0 += 16)
                for (int b0 = 0; b0 < nPad; b0 += Lanes32)
                {
                    int r1 = Math.Min(rows, r0 + 16);
                    for (int b = b0; b < b0 + Lanes32; b++)
                        for (int r = r0; r < r1; r++) xt[(long)r * nPad + b] = b < n ? x[(long)b * rows + r] : 0;
                }
            nint ya = (nint)y, xta = (nint)xt;
            int groups = cols / Cols8, bBlocks = nPad / Lanes32, tasks = groups * bBlocks;
            long work = (long)n * rows * cols;
            void Task(int t)
            {
                int bb = t / groups, g = t % groups;
                if (w.Type == WeightType.F32) LanesF32((float*)ya, (float*)xta, w, n, nPad, bb * Lanes32, g * Cols8);
                else LanesBF16((float*)ya, (float*)xta, w, n, nPad, bb * Lanes32, g * Cols8);
            }
            Chunked(tasks, work, Task);
        }
    }

    /// <summary>Runs body(0..count) in a few contiguous chunks per core (one Parallel.For item per chunk, not per task),
    /// or inline when the work is small.</summary>
    private static void Chunked(int count, long work, Action<int> body)
    {
        int chunks = Math.Min(count, Environment.ProcessorCount * 4);
        if (work < 1 << 18 || chunks <= 1)
        {
            for (int t = 0; t < count; t++) body(t);
            return;
        }
        Parallel.For(0, chunks, c =>
        {
            int a = (int)((long)count * c / chunks), b = (int)((long)count * (c + 1) / chunks);
            for (int t = a; t < b; t++) body(t);
        });
    }

    private static void LanesF32(float* y, float* xt, WeightMatrix w, int n, int nPad, int b0, int k0)
    {
        int rows = w.Rows, cols = w.Cols;
        bool packed = w.Packed;
        int kStride = packed ? WeightMatrix.PanelRows : 1;
        float* data = (float*)w.Data;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int r = 0; r < rows; r++)
        {
            float* wr = data + (packed ? (long)(r >> 4) * 16 * cols + (r & 15) : (long)r * cols) + (long)k0 * kStride;
            float* xr = xt + (long)r * nPad + b0;
            var u = Vector512.Load(xr);
            var v = Vector512.Load(xr + 16);
            var s = Vector512.Create(wr[0]); a0 = Vector512.FusedMultiplyAdd(s, u, a0); c0 = Vector512.FusedMultiplyAdd(s, v, c0);
            s = Vector512.Create(wr[kStride]); a1 = Vector512.FusedMultiplyAdd(s, u, a1); c1 = Vector512.FusedMultiplyAdd(s, v, c1);
            s = Vector512.Create(wr[2 * kStride]); a2 = Vector512.FusedMultiplyAdd(s, u, a2); c2 = Vector512.FusedMultiplyAdd(s, v, c2);
            s = Vector512.Create(wr[3 * kStride]); a3 = Vector512.FusedMultiplyAdd(s, u, a3); c3 = Vector512.FusedMultiplyAdd(s, v, c3);
            s = Vector512.Create(wr[4 * kStride]); a4 = Vector512.FusedMultiplyAdd(s, u, a4); c4 = Vector512.FusedMultiplyAdd(s, v, c4);
            s = Vector512.Create(wr[5 * kStride]); a5 = Vector512.FusedMultiplyAdd(s, u, a5); c5 = Vector512.FusedMultiplyAdd(s, v, c5);
            s = Vector512.Create(wr[6 * kStride]); a6 = Vector512.FusedMultiplyAdd(s, u, a6); c6 = Vector512.FusedMultiplyAdd(s, v, c6);
            s = Vector512.Create(wr[7 * kStride]); a7 = Vector512.FusedMultiplyAdd(s, u, a7); c7 = Vector512.FusedMultiplyAdd(s, v, c7);
        }
        Store(y, n, cols, b0, k0, a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    private static void LanesBF16(float* y, float* xt, WeightMatrix w, int n, int nPad, int b0, int k0)
    {
        int rows = w.Rows, cols = w.Cols;
        bool packed = w.Packed;
        int kStride = packed ? WeightMatrix.PanelRows : 1;
        ushort* data = (ushort*)w.Data;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int r = 0; r < rows; r++)
        {
            ushort* wr = data + (packed ? (long)(r >> 4) * 16 * cols + (r & 15) : (long)r * cols) + (long)k0 * kStride;
            float* xr = xt + (long)r * nPad + b0;
            var u = Vector512.Load(xr);
            var v = Vector512.Load(xr + 16);
            var s = B(wr[0]); a0 = Vector512.FusedMultiplyAdd(s, u, a0); c0 = Vector512.FusedMultiplyAdd(s, v, c0);
            s = B(wr[kStride]); a1 = Vector512.FusedMultiplyAdd(s, u, a1); c1 = Vector512.FusedMultiplyAdd(s, v, c1);
            s = B(wr[2 * kStride]); a2 = Vector512.FusedMultiplyAdd(s, u, a2); c2 = Vector512.FusedMultiplyAdd(s, v, c2);
            s = B(wr[3 * kStride]); a3 = Vector512.FusedMultiplyAdd(s, u, a3); c3 = Vector512.FusedMultiplyAdd(s, v, c3);
            s = B(wr[4 * kStride]); a4 = Vector512.FusedMultiplyAdd(s, u, a4); c4 = Vector512.FusedMultiplyAdd(s, v, c4);
            s = B(wr[5 * kStride]); a5 = Vector512.FusedMultiplyAdd(s, u, a5); c5 = Vector512.FusedMultiplyAdd(s, v, c5);
            s = B(wr[6 * kStride]); a6 = Vector512.FusedMultiplyAdd(s, u, a6); c6 = Vector512.FusedMultiplyAdd(s, v, c6);
            s = B(wr[7 * kStride]); a7 = Vector512.FusedMultiplyAdd(s, u, a7); c7 = Vector512.FusedMultiplyAdd(s, v, c7);
        }
        Store(y, n, cols, b0, k0, a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> B(ushort bits) => Vector512.Create(BitConverter.Int32BitsToSingle(bits << 16));

    /// <summary>a_j holds y[b0..b0+16, k0+j], c_j holds y[b0+16..b0+32, k0+j]: written out row by row (rows ≥ n skipped).</summary>
    private static void Store(float* y, int n, int cols, int b0, int k0,
        Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, Vector512<float> a4, Vector512<float> a5, Vector512<float> a6, Vector512<float> a7,
        Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3, Vector512<float> c4, Vector512<float> c5, Vector512<float> c6, Vector512<float> c7)
    {
        float* t = stackalloc float[Lanes32 * Cols8];   // (column, lane)
        a0.Store(t); c0.Store(t + 16); a1.Store(t + 32); c1.Store(t + 48); a2.Store(t + 64); c2.Store(t + 80); a3.Store(t + 96); c3.Store(t + 112);
        a4.Store(t + 128); c4.Store(t + 144); a5.Store(t + 160); c5.Store(t + 176); a6.Store(t + 192); c6.Store(t + 208); a7.Store(t + 224); c7.Store(t + 240);
        int end = Math.Min(Lanes32, n - b0);
        for (int lane = 0; lane < end; lane++)
        {
            float* yr = y + (long)(b0 + lane) * cols + k0;
            for (int j = 0; j < Cols8; j++) yr[j] = t[j * Lanes32 + lane];
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
