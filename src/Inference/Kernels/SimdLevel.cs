using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>Which vector width the CPU kernels use. Best is decided at run time.</summary>
public enum SimdLevel { Scalar, Vector256, Vector512 }

public static class Simd
{
    public static SimdLevel Best =>
        Vector512.IsHardwareAccelerated ? SimdLevel.Vector512
        : Vector256.IsHardwareAccelerated ? SimdLevel.Vector256 : SimdLevel.Scalar;
}
