using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>Short vector loops shared by the attention and LoRA kernels, at the kernel's SIMD level.</summary>
internal static unsafe class VecOps
{
    /// <summary>Σ a[k]·b[k] over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int n, SimdLevel level)
    {
        int k = 0;
        float s = 0;
        if (level == SimdLevel.Vector512 && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; k + 16 <= n; k += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), acc);
            s = Vector512.Sum(acc);
        }
        else if (level != SimdLevel.Scalar && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= n; k += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc);
            s = Vector256.Sum(acc);
        }
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    /// <summary>y += a · x over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float* y, float* x, float a, int n, SimdLevel level)
    {
        int k = 0;
        if (level == SimdLevel.Vector512)
        {
            var av = Vector512.Create(a);
            for (; k + 16 <= n; k += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + k), av, Vector512.Load(y + k)).Store(y + k);
        }
        else if (level != SimdLevel.Scalar)
        {
            var av = Vector256.Create(a);
            for (; k + 8 <= n; k += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + k), av, Vector256.Load(y + k)).Store(y + k);
        }
        for (; k < n; k++) y[k] += a * x[k];
    }
}
