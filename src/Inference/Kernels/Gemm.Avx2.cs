using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>The GEMM's tiles at 256 bits (AVX2 with FMA, no AVX-512): an 8 × 32 tile as four 4 × 16 ones (8 accumulators,
/// two loads of W and four broadcasts of x per step of k), a single row as 16-column chains. Each output lane is the same
/// fused multiply-add chain over k as in the 512-bit tiles (from zero or from y, k ascending), so the results are bitwise
/// those of the AVX-512 path.</summary>
internal static unsafe partial class Gemm
{
    /// <summary>y (4 rows at stride ys, 16 columns) (+)= x (4 rows at stride xs, kc) · p (kc rows at stride ps, 16).</summary>
    private static void Tile4x16(float* y, int ys, float* x, int xs, float* p, int ps, int kc, bool first)
    {
        Vector256<float> a0, a1, a2, a3, c0, c1, c2, c3;
        if (first) a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = default;
        else
        {
            a0 = Vector256.Load(y); c0 = Vector256.Load(y + 8);
            a1 = Vector256.Load(y + ys); c1 = Vector256.Load(y + ys + 8);
            a2 = Vector256.Load(y + 2 * ys); c2 = Vector256.Load(y + 2 * ys + 8);
            a3 = Vector256.Load(y + 3 * ys); c3 = Vector256.Load(y + 3 * ys + 8);
        }
        float* x0 = x, x1 = x + xs, x2 = x + 2 * xs, x3 = x + 3 * xs;
        for (int r = 0; r < kc; r++)
        {
            float* pr = p + (long)r * ps;
            var u = Vector256.Load(pr);
            var v = Vector256.Load(pr + 8);
            var s = Vector256.Create(x0[r]); a0 = Fma.MultiplyAdd(s, u, a0); c0 = Fma.MultiplyAdd(s, v, c0);
            s = Vector256.Create(x1[r]); a1 = Fma.MultiplyAdd(s, u, a1); c1 = Fma.MultiplyAdd(s, v, c1);
            s = Vector256.Create(x2[r]); a2 = Fma.MultiplyAdd(s, u, a2); c2 = Fma.MultiplyAdd(s, v, c2);
            s = Vector256.Create(x3[r]); a3 = Fma.MultiplyAdd(s, u, a3); c3 = Fma.MultiplyAdd(s, v, c3);
        }
        a0.Store(y); c0.Store(y + 8);
        a1.Store(y + ys); c1.Store(y + ys + 8);
        a2.Store(y + 2 * ys); c2.Store(y + 2 * ys + 8);
        a3.Store(y + 3 * ys); c3.Store(y + 3 * ys + 8);
    }

    /// <summary>One row, 16 columns: y (+)= x (kc) · p (kc, 16).</summary>
    private static void Tile1x16(float* y, float* x, float* p, int ps, int kc, bool first)
    {
        Vector256<float> a = first ? default : Vector256.Load(y), c = first ? default : Vector256.Load(y + 8);
        for (int r = 0; r < kc; r++)
        {
            var s = Vector256.Create(x[r]);
            float* pr = p + (long)r * ps;
            a = Fma.MultiplyAdd(s, Vector256.Load(pr), a);
            c = Fma.MultiplyAdd(s, Vector256.Load(pr + 8), c);
        }
        a.Store(y);
        c.Store(y + 8);
    }
}
