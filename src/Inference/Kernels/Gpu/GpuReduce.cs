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

    public static int SumInt(ArrayView<int> red, int v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half) red[tid] += red[tid + half];
            Group.Barrier();
        }
        int r = red[0];
        Group.Barrier();
        return r;
    }

    public static int MinInt(ArrayView<int> red, int v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half && red[tid + half] < red[tid]) red[tid] = red[tid + half];
            Group.Barrier();
        }
        int r = red[0];
        Group.Barrier();
        return r;
    }

    public static int MaxInt(ArrayView<int> red, int v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half && red[tid + half] > red[tid]) red[tid] = red[tid + half];
            Group.Barrier();
        }
        int r = red[0];
        Group.Barrier();
        return r;
    }

    public static ulong MaxULong(ArrayView<ulong> red, ulong v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half && red[tid + half] > red[tid]) red[tid] = red[tid + half];
            Group.Barrier();
        }
        ulong r = red[0];
        Group.Barrier();
        return r;
    }

    public static double SumDouble(ArrayView<double> red, double v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half) red[tid] += red[tid + half];
            Group.Barrier();
        }
        double r = red[0];
        Group.Barrier();
        return r;
    }

    /// <summary>The sum of the values of the threads before this one (thread order), summed one after another.</summary>
    public static double ExclusiveScan(ArrayView<double> red, double v, int tid, int g)
    {
        red[tid] = v;
        Group.Barrier();
        if (tid == 0)
        {
            double s = 0;
            for (int j = 0; j < g; j++)
            {
                double x = red[j];
                red[j] = s;
                s += x;
            }
        }
        Group.Barrier();
        double r = red[tid];
        Group.Barrier();
        return r;
    }
}
