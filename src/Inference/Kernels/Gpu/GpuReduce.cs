using ILGPU;
using ILGPU.Algorithms;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Group-wide reductions over shared memory (group size a power of two, at most <see cref="GpuMatMul.MaxGroup"/>).
/// Every thread of the group must call them; every thread gets the result.</summary>
internal static class GpuReduce
{
    public static float Sum(ArrayView<float> red, float v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half) red[tid] += red[tid + half];
            Group.Barrier();
        }
        float r = red[0];
        Group.Barrier();
        return r;
    }

    public static float Max(ArrayView<float> red, float v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half) red[tid] = XMath.Max(red[tid], red[tid + half]);
            Group.Barrier();
        }
        float r = red[0];
        Group.Barrier();
        return r;
    }
}
