using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>Row-major weights at 256 bits (AVX2 and FMA without AVX-512, where weights stay row-major: the packed panels
/// pay only with 32 vector registers). Tiles of 4 weight rows × 3 input rows hold 12 accumulators, so each weight load
/// feeds three sequences and each input load four rows; 4 × 2 and 4 × 1 take the batch's last rows. Every output is one
/// chain of 8-wide fused multiply-adds over k in ascending order, summed across its lanes once, then the columns past the
/// last multiple of 8 one at a time: the arithmetic of <see cref="DotF32"/> and <see cref="DotBF16"/>, so an output's
/// bits do not depend on the tile that computed it, on its place in the batch, or on the chunking.</summary>
public static unsafe partial class MatMulKernel
{
    /// <summary>Whether the 256-bit row-major tiles run at this level on this machine.</summary>
    internal static bool Tiles256(SimdLevel level) => level == SimdLevel.Vector256 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Output rows [r0, r1) of input rows [b0, b1) (blocks of <see cref="BatchBlock"/> from b0) with the 256-bit tiles.</summary>
    private static void Rows256(float* y, int ys, float* x, WeightMatrix w, int b0, int b1, int r0, int r1)
    {
        int cols = w.Cols;
        bool f32 = w.Type == WeightType.F32;
        for (int bb = b0; bb < b1; bb += BatchBlock)
        {
            int be = Math.Min(b1, bb + BatchBlock);
            int r = r0;
            for (; r + 4 <= r1; r += 4)
            {
                int b = bb;
                if (f32)
                {
                    float* wr = (float*)w.Data + (long)r * cols;
                    for (; b + 3 <= be; b += 3) TileF32x4x3(y + (long)b * ys + r, ys, x + (long)b * cols, wr, cols);
                    for (; b < be; b++) TileF32x4x1(y + (long)b * ys + r, x + (long)b * cols, wr, cols);
                }
                else
                {
                    ushort* wr = (ushort*)w.Data + (long)r * cols;
                    for (; b + 3 <= be; b += 3) TileBF16x4x3(y + (long)b * ys + r, ys, x + (long)b * cols, wr, cols);
                    for (; b < be; b++) TileBF16x4x1(y + (long)b * ys + r, x + (long)b * cols, wr, cols);
                }
            }
            for (; r < r1; r++)
                for (int b = bb; b < be; b++)
                    y[(long)b * ys + r] = f32
                        ? DotF32((float*)w.Data + (long)r * cols, x + (long)b * cols, cols, SimdLevel.Vector256)
                        : DotBF16((ushort*)w.Data + (long)r * cols, x + (long)b * cols, cols, SimdLevel.Vector256);
        }
    }

    /// <summary>Eight bf16 values as f32 (exact: the bits moved up by 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen8(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();

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
    private static void TileF32x4x3(float* y, int ys, float* x, float* w, int cols)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x, x1 = x0 + cols, x2 = x1 + cols;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
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

    /// <summary>y[i] for weight rows w + i · cols (i &lt; 4) and one input row.</summary>
    private static void TileF32x4x1(float* y, float* x, float* w, int cols)
    {
        float* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
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

    private static void TileBF16x4x3(float* y, int ys, float* x, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x, x1 = x0 + cols, x2 = x1 + cols;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
            var v0 = Vector256.Load(x0 + k); var v1 = Vector256.Load(x1 + k); var v2 = Vector256.Load(x2 + k);
            var u = Widen8(w0 + k);
            a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01); a02 = Fma.MultiplyAdd(u, v2, a02);
            u = Widen8(w1 + k);
            a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11); a12 = Fma.MultiplyAdd(u, v2, a12);
            u = Widen8(w2 + k);
            a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21); a22 = Fma.MultiplyAdd(u, v2, a22);
            u = Widen8(w3 + k);
            a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31); a32 = Fma.MultiplyAdd(u, v2, a32);
        }
        float* y0 = y, y1 = y + ys, y2 = y1 + ys;
        y0[0] = TailBF16(Vector256.Sum(a00), w0, x0, end, cols); y1[0] = TailBF16(Vector256.Sum(a01), w0, x1, end, cols); y2[0] = TailBF16(Vector256.Sum(a02), w0, x2, end, cols);
        y0[1] = TailBF16(Vector256.Sum(a10), w1, x0, end, cols); y1[1] = TailBF16(Vector256.Sum(a11), w1, x1, end, cols); y2[1] = TailBF16(Vector256.Sum(a12), w1, x2, end, cols);
        y0[2] = TailBF16(Vector256.Sum(a20), w2, x0, end, cols); y1[2] = TailBF16(Vector256.Sum(a21), w2, x1, end, cols); y2[2] = TailBF16(Vector256.Sum(a22), w2, x2, end, cols);
        y0[3] = TailBF16(Vector256.Sum(a30), w3, x0, end, cols); y1[3] = TailBF16(Vector256.Sum(a31), w3, x1, end, cols); y2[3] = TailBF16(Vector256.Sum(a32), w3, x2, end, cols);
    }

    private static void TileBF16x4x1(float* y, float* x, ushort* w, int cols)
    {
        ushort* w0 = w, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int end = cols & ~7;
        for (int k = 0; k < end; k += 8)
        {
            var v = Vector256.Load(x + k);
            a0 = Fma.MultiplyAdd(Widen8(w0 + k), v, a0);
            a1 = Fma.MultiplyAdd(Widen8(w1 + k), v, a1);
            a2 = Fma.MultiplyAdd(Widen8(w2 + k), v, a2);
            a3 = Fma.MultiplyAdd(Widen8(w3 + k), v, a3);
        }
        y[0] = TailBF16(Vector256.Sum(a0), w0, x, end, cols);
        y[1] = TailBF16(Vector256.Sum(a1), w1, x, end, cols);
        y[2] = TailBF16(Vector256.Sum(a2), w2, x, end, cols);
        y[3] = TailBF16(Vector256.Sum(a3), w3, x, end, cols);
    }
}
