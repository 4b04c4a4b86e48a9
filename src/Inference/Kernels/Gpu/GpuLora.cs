using ILGPU;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Sizes of one LoRA module call: projection in → out at (Layer, Target), scratch stride R (largest rank in the
/// batch); Modules holds, per (adapter slot, layer, target), (rank, A's offset, Bᵀ's offset) into the device page-table
/// arena, with LoraTargets.Count targets per layer.</summary>
internal readonly record struct LoraShape(int In, int Out, int R, int Layer, int Target, int Layers, int Targets, int PageFloats)
{
    public int ModuleAt(int slot) => ((slot * Layers + Layer) * Targets + Target) * 3;
}

/// <summary>Device code of heterogeneous LoRA (Punica / S-LoRA's SGMV idea): each token finds its adapter slot, and the
/// rows of A and Bᵀ are gathered through the adapter's page table from the device mirror of the unified pool, so
/// adapters of different ranks run in one batch, unmerged. Shrink: s (tokens, R) = x Aᵀ; expand: y += scale · s Bᵀ.
/// Scalar twin: <see cref="NaiveLora"/>.</summary>
internal static class GpuLora
{
    /// <summary>Grid: tokens × R groups; group (t, i) computes s[t, i] = x[t] · A[i] (nothing for a token without an adapter,
    /// or i past its adapter's rank at this module).</summary>
    public static void Shrink(ArrayView<float> scratch, ArrayView<float> x, ArrayView<float> pages, ArrayView<int> arena,
        ArrayView<int> modules, ArrayView<int> tokenSlot, LoraShape s)
    {
        int t = Grid.IdxX / s.R, i = Grid.IdxX % s.R, tid = Group.IdxX, g = Group.DimX;
        var red = SharedMemory.Allocate<float>(GpuMatMul.MaxGroup);
        int slot = tokenSlot[t];
        if (slot < 0) return; // uniform across the group
        int mb = s.ModuleAt(slot), rank = modules[mb], aOff = modules[mb + 1];
        if (i >= rank) return;
        int chunks = (s.In + s.PageFloats - 1) / s.PageFloats, row = aOff + i * chunks;
        long xo = (long)t * s.In;
        float sum = 0f;
        for (int k = tid; k < s.In; k += g)
            sum += pages[(long)arena[row + k / s.PageFloats] * s.PageFloats + k % s.PageFloats] * x[xo + k];
        float total = GpuReduce.Sum(red, sum, tid, g);
        if (tid == 0) scratch[(long)t * s.R + i] = total;
    }

    /// <summary>One thread per (token, output): y[t, o] += scale · Σ_i s[t, i] Bᵀ[i, o].</summary>
    public static void Expand(Index1D index, ArrayView<float> y, ArrayView<float> scratch, ArrayView<float> pages, ArrayView<int> arena,
        ArrayView<int> modules, ArrayView<float> scales, ArrayView<int> tokenSlot, LoraShape s)
    {
        int t = index / s.Out, o = index % s.Out;
        int slot = tokenSlot[t];
        if (slot < 0) return;
        int mb = s.ModuleAt(slot), rank = modules[mb], bOff = modules[mb + 2];
        if (rank == 0) return;
        int chunks = (s.Out + s.PageFloats - 1) / s.PageFloats, c = o / s.PageFloats, within = o % s.PageFloats;
        long so = (long)t * s.R;
        float sum = 0f;
        for (int i = 0; i < rank; i++) sum += scratch[so + i] * pages[(long)arena[bOff + i * chunks + c] * s.PageFloats + within];
        y[index] += scales[slot] * sum;
    }
}
