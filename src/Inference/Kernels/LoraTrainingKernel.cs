using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Loom.Inference.Kernels;

/// <summary>Dense LoRA forward and backward for one module over a training row (contiguous f32 weights, not pool pages).
/// Shapes: x (T, in), u = x·Aᵀ (T, r), A (r, in), Bt = Bᵀ (r, out), y and dY (T, out). With AVX-512 every product is
/// a <see cref="Gemm"/> on row-major operands (the small transposed operands, r × in or r × T, are copied into
/// per-thread scratch first); otherwise parallel over independent rows of each result with vector dot products and
/// axpys. Every sum runs in a fixed order, so results do not depend on the number of cores.</summary>
public static unsafe class LoraTrainingKernel
{
    [ThreadStatic] private static float[]? _s1, _s2;   // per-thread scratch for transposed operands, pinned

    private static float* Scratch(ref float[]? buffer, int length)
    {
        if (buffer == null || buffer.Length < length) buffer = GC.AllocateArray<float>(Math.Max(length, 1024), pinned: true);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));   // pinned: the address is stable
    }

    /// <summary>dst (cols, rows) = scale · src (rows, cols)ᵀ.</summary>
    private static void Transpose(float* dst, float* src, int rows, int cols, float scale)
    {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) dst[(long)j * rows + i] = scale * src[(long)i * cols + j];
    }

    private const int SerialRows = 32;

    private static bool Blocked(SimdLevel level) => level >= SimdLevel.Vector256 && Gemm.Supported;

    /// <summary>u (T, r) = x · Aᵀ: dot products split over vector lanes (their accuracy carries through AdamW into every
    /// weight; one fused multiply-add chain per output over in, as a GEMM tile sums, moved the oracle's three-step AdamW
    /// case from 7.7e-5 to 1.2e-4 relative).</summary>
    public static void Shrink(Span<float> u, ReadOnlySpan<float> x, ReadOnlySpan<float> a, int T, int r, int inDim, SimdLevel level)
    {
        if (level == SimdLevel.Scalar) { NaiveLoraTraining.Shrink(u, x, a, T, r, inDim); return; }
        fixed (float* up = u) fixed (float* xp = x) fixed (float* ap = a)
        {

            nint ua = (nint)up, xa = (nint)xp, aa = (nint)ap;
            // a chunk's few rows on the calling thread (cheaper than waking the thread pool); the same dot products
            For(T, T <= SerialRows ? 0 : (long)T * r * inDim, t =>
            {
                for (int i = 0; i < r; i++)
                    ((float*)ua)[(long)t * r + i] = VecOps.Dot((float*)xa + (long)t * inDim, (float*)aa + (long)i * inDim, inDim, level);
            });
        }
    }

    /// <summary>y (T, out) += scale · u · Bt.</summary>
    public static void Expand(Span<float> y, ReadOnlySpan<float> u, ReadOnlySpan<float> bt, float scale, int T, int r, int outDim, SimdLevel level)
    {
        if (level == SimdLevel.Scalar) { NaiveLoraTraining.Expand(y, u, bt, scale, T, r, outDim); return; }
        fixed (float* yp = y) fixed (float* up = u) fixed (float* bp = bt)
        {
            if (Blocked(level))
            {
                float* us = Scratch(ref _s1, T * r);   // (T, r) scale · u
                for (long i = 0; i < (long)T * r; i++) us[i] = scale * up[i];
                Gemm.RowMajor(yp, outDim, us, r, bp, outDim, T, r, outDim, accumulate: true, serial: T <= SerialRows);
                return;
            }
            nint ya = (nint)yp, ua = (nint)up, ba = (nint)bp;
            For(T, T <= SerialRows ? 0 : (long)T * r * outDim, t =>
            {
                for (int i = 0; i < r; i++)
                    VecOps.Axpy((float*)ya + (long)t * outDim, (float*)ba + (long)i * outDim, scale * ((float*)ua)[(long)t * r + i], outDim, level);
            });
        }
    }

    /// <summary>Backward of y += scale · (x Aᵀ) Bᵀ given dY: dA (r, in) += scale · (dY B)ᵀ x; dBt (r, out) += scale · uᵀ dY;
    /// dx (T, in) += scale · (dY B) A (skipped when dx is empty). tmp: (T, r) scratch.</summary>
    public static void Backward(Span<float> dx, Span<float> dA, Span<float> dBt, Span<float> tmp, ReadOnlySpan<float> dY, ReadOnlySpan<float> x,
        ReadOnlySpan<float> u, ReadOnlySpan<float> a, ReadOnlySpan<float> bt, float scale, int T, int r, int inDim, int outDim, SimdLevel level)
    {
        if (level == SimdLevel.Scalar) { NaiveLoraTraining.Backward(dx, dA, dBt, dY, x, u, a, bt, scale, T, r, inDim, outDim); return; }
        fixed (float* dxp = dx) fixed (float* dap = dA) fixed (float* dbp = dBt) fixed (float* tp = tmp) fixed (float* dyp = dY)
        fixed (float* xp = x) fixed (float* up = u) fixed (float* ap = a) fixed (float* bp = bt)
        {
            nint dxa = (nint)dxp, daa = (nint)dap, dba = (nint)dbp, ta = (nint)tp, dya = (nint)dyp, xa = (nint)xp, ua = (nint)up, aa = (nint)ap, ba = (nint)bp;
            // tmp (T, r) = scale · dY · B: dot products of length out (split over vector lanes: the accuracy of this
            // small product carries into every A gradient)
            For(T, (long)T * r * outDim, t =>
            {
                for (int i = 0; i < r; i++)
                    ((float*)ta)[(long)t * r + i] = scale * VecOps.Dot((float*)dya + (long)t * outDim, (float*)ba + (long)i * outDim, outDim, level);
            });
            if (Blocked(level))
            {
                // dBt (r, out) += (scale · u)ᵀ · dY
                float* t2 = Scratch(ref _s2, r * T);
                Transpose(t2, up, T, r, scale);
                Gemm.RowMajor(dbp, outDim, t2, T, dyp, outDim, r, T, outDim, accumulate: true);
                // dA (r, in) += tmpᵀ · x
                Transpose(t2, tp, T, r, 1);
                Gemm.RowMajor(dap, inDim, t2, T, xp, inDim, r, T, inDim, accumulate: true);
                // dx (T, in) += tmp · A
                if (dx.Length != 0) Gemm.RowMajor(dxp, inDim, tp, r, ap, inDim, T, r, inDim, accumulate: true);
                return;
            }
            For(r, (long)T * r * (inDim + outDim), i =>
            {
                float* dai = (float*)daa + (long)i * inDim, dbi = (float*)dba + (long)i * outDim;
                for (int t = 0; t < T; t++)
                {
                    VecOps.Axpy(dbi, (float*)dya + (long)t * outDim, scale * ((float*)ua)[(long)t * r + i], outDim, level);
                    VecOps.Axpy(dai, (float*)xa + (long)t * inDim, ((float*)ta)[(long)t * r + i], inDim, level);
                }
            });
            if (dx.Length == 0) return;
            For(T, (long)T * r * inDim, t =>
            {
                for (int i = 0; i < r; i++)
                    VecOps.Axpy((float*)dxa + (long)t * inDim, (float*)aa + (long)i * inDim, ((float*)ta)[(long)t * r + i], inDim, level);
            });
        }
    }

    private static void For(int count, long work, Action<int> body)
    {
        if (work < 1 << 15 || count == 1) for (int i = 0; i < count; i++) body(i);
        else Parallel.For(0, count, body);
    }
}

/// <summary>The scalar twin of <see cref="LoraTrainingKernel"/> (double accumulators).</summary>
public static class NaiveLoraTraining
{
    public static void Shrink(Span<float> u, ReadOnlySpan<float> x, ReadOnlySpan<float> a, int T, int r, int inDim)
    {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < r; i++)
            {
                double s = 0;
                for (int k = 0; k < inDim; k++) s += (double)x[t * inDim + k] * a[i * inDim + k];
                u[t * r + i] = (float)s;
            }
    }

    public static void Expand(Span<float> y, ReadOnlySpan<float> u, ReadOnlySpan<float> bt, float scale, int T, int r, int outDim)
    {
        for (int t = 0; t < T; t++)
            for (int o = 0; o < outDim; o++)
            {
                double s = 0;
                for (int i = 0; i < r; i++) s += (double)u[t * r + i] * bt[i * outDim + o];
                y[t * outDim + o] = (float)(y[t * outDim + o] + scale * s);
            }
    }

    public static void Backward(Span<float> dx, Span<float> dA, Span<float> dBt, ReadOnlySpan<float> dY, ReadOnlySpan<float> x,
        ReadOnlySpan<float> u, ReadOnlySpan<float> a, ReadOnlySpan<float> bt, float scale, int T, int r, int inDim, int outDim)
    {
        var tmp = new double[T * r];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < r; i++)
            {
                double s = 0;
                for (int o = 0; o < outDim; o++) s += (double)dY[t * outDim + o] * bt[i * outDim + o];
                tmp[t * r + i] = scale * s;
            }
        for (int i = 0; i < r; i++)
        {
            for (int o = 0; o < outDim; o++)
            {
                double s = 0;
                for (int t = 0; t < T; t++) s += (double)u[t * r + i] * dY[t * outDim + o];
                dBt[i * outDim + o] = (float)(dBt[i * outDim + o] + scale * s);
            }
            for (int k = 0; k < inDim; k++)
            {
                double s = 0;
                for (int t = 0; t < T; t++) s += tmp[t * r + i] * x[t * inDim + k];
                dA[i * inDim + k] = (float)(dA[i * inDim + k] + s);
            }
        }
        if (dx.Length == 0) return;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < inDim; k++)
            {
                double s = 0;
                for (int i = 0; i < r; i++) s += tmp[t * r + i] * a[i * inDim + k];
                dx[t * inDim + k] = (float)(dx[t * inDim + k] + s);
            }
    }
}
