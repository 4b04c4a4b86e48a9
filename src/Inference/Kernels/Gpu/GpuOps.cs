using ILGPU;
using ILGPU.Algorithms;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code of the element-wise and row-wise operations of the forward pass. Output first, as the CPU
/// kernels; their scalar twins are <see cref="NaiveOps"/> and <see cref="Ops"/>.</summary>
internal static class GpuOps
{
    /// <summary>y (n, dim) = RMSNorm of each row of x (n, dim) times weight (dim). Grid: n groups.</summary>
    public static void RmsNorm(ArrayView<float> y, ArrayView<float> x, ArrayView<float> weight, int dim, float eps)
    {
        int row = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        var red = SharedMemory.Allocate<float>(GpuMatMul.MaxGroup);
        long at = (long)row * dim;
        float ss = 0;
        for (int i = tid; i < dim; i += g)
        {
            float v = x[at + i];
            ss += v * v;
        }
        float total = GpuReduce.Sum(red, ss, tid, g);
        float scale = XMath.Rsqrt(total / dim + eps);
        for (int i = tid; i < dim; i += g) y[at + i] = x[at + i] * scale * weight[i];
    }

    /// <summary>y = silu(gate) · up, element-wise.</summary>
    public static void SiluMul(Index1D i, ArrayView<float> y, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        y[i] = g / (1f + XMath.Exp(-g)) * up[i];
    }

    /// <summary>x (n, dim) = rows tokens[t] of an f32 embedding (vocab, dim).</summary>
    public static void EmbedF32(Index1D i, ArrayView<float> x, ArrayView<float> embedding, ArrayView<int> tokens, int dim) =>
        x[i] = embedding[(long)tokens[i / dim] * dim + i % dim];

    /// <summary>x (n, dim) = rows tokens[t] of a bf16 embedding (vocab, dim), widened.</summary>
    public static void EmbedBF16(Index1D i, ArrayView<float> x, ArrayView<ushort> embedding, ArrayView<int> tokens, int dim) =>
        x[i] = Interop.IntAsFloat((uint)embedding[(long)tokens[i / dim] * dim + i % dim] << 16);

    /// <summary>dst (rows, width) = src rows index[r] (the last token of each sequence).</summary>
    public static void GatherRows(Index1D i, ArrayView<float> dst, ArrayView<float> src, ArrayView<int> index, int width) =>
        dst[i] = src[(long)index[i / width] * width + i % width];

    /// <summary>ids (rows) = index of the largest value of each row of x (rows, width); the lowest index on ties, as
    /// <see cref="NaiveOps.Argmax"/>. Grid: rows groups.</summary>
    public static void Argmax(ArrayView<int> ids, ArrayView<float> x, int width)
    {
        int row = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        var best = SharedMemory.Allocate<float>(GpuMatMul.MaxGroup);
        var at = SharedMemory.Allocate<int>(GpuMatMul.MaxGroup);
        long o = (long)row * width;
        float bv = float.NegativeInfinity;
        int bi = int.MaxValue;
        for (int i = tid; i < width; i += g)
        {
            float v = x[o + i];
            if (v > bv) { bv = v; bi = i; }
        }
        best[tid] = bv;
        at[tid] = bi;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half)
            {
                float v = best[tid + half];
                int j = at[tid + half];
                if (v > best[tid] || (v == best[tid] && j < at[tid]))
                {
                    best[tid] = v;
                    at[tid] = j;
                }
            }
            Group.Barrier();
        }
        if (tid == 0) ids[row] = at[0] == int.MaxValue ? 0 : at[0];
    }
}

/// <summary>Head layout of a RoPE call.</summary>
internal readonly record struct RopeShape(int Heads, int KvHeads, int HeadDim);
