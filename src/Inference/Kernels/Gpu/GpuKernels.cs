using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Sampling;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>The device kernels, compiled once per accelerator, with their launch shapes. Everything is enqueued on the
/// accelerator's default stream in order; nothing here waits for the device.</summary>
public sealed class GpuKernels
{
    /// <summary>Up to this many token rows a matmul uses the decode kernel (one warp per output, eight tokens a pass);
    /// more use the tiles.</summary>
    public const int DecodeRows = 32;

    private readonly Accelerator _a;
    private readonly int _g;
    private readonly int _warpsPerGroup;
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, F32Weights, MatMulShape> _tiledF32;
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, BF16Weights, MatMulShape> _tiledBF16;
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, F32Weights, MatMulShape, int, ArrayView<float>> _tile64F32;
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, BF16Weights, MatMulShape, int, ArrayView<float>> _tile64BF16;
    private readonly Action<Index1D, MatMulOut, ArrayView<float>, MatMulShape, int> _sumParts;
    private readonly int _multiprocessors;
    private MemoryBuffer1D<float, Stride1D.Dense> _partials;   // (split, n, rows) of a split Tile64 matmul
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, F32Weights, MatMulShape, int> _rowsF32;
    private readonly Action<KernelConfig, MatMulOut, ArrayView<float>, BF16Weights, MatMulShape, int> _rowsBF16;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNorm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> _siluMul;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int> _embedF32;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<int>, int> _embedBF16;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int> _gather;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<float>, int> _argmax;
    private readonly Action<KernelConfig, ArrayView<DeviceSample>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceSampleRow>,
        ArrayView<uint>, ArrayView<int>, ArrayView<float>, int> _sample;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, PagedKvShape, AttentionShape> _attend;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<float>, ArrayView<float>, PagedKvShape, RopeShape> _ropeWriteKv;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, LoraShape> _shrink;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, LoraShape> _expand;

    public GpuAccelerator Device { get; }

    public GpuKernels(GpuAccelerator device)
    {
        Device = device;
        _a = device.Accelerator;
        _g = device.GroupSize;
        _warpsPerGroup = Math.Max(1, _g / _a.WarpSize);
        if (_warpsPerGroup > GpuMatMul.MaxWarps) throw new NotSupportedException($"{_warpsPerGroup} warps per group (the matmul kernels sum across at most {GpuMatMul.MaxWarps})");
        _rowsF32 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, F32Weights, MatMulShape, int>(GpuMatMul.Rows);
        _tiledF32 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, F32Weights, MatMulShape>(GpuMatMul.Tiled);
        _rowsBF16 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, BF16Weights, MatMulShape, int>(GpuMatMul.Rows);
        _tiledBF16 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, BF16Weights, MatMulShape>(GpuMatMul.Tiled);
        _tile64F32 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, F32Weights, MatMulShape, int, ArrayView<float>>(GpuMatMul.Tile64);
        _tile64BF16 = _a.LoadStreamKernel<MatMulOut, ArrayView<float>, BF16Weights, MatMulShape, int, ArrayView<float>>(GpuMatMul.Tile64);
        _sumParts = _a.LoadAutoGroupedStreamKernel<Index1D, MatMulOut, ArrayView<float>, MatMulShape, int>(GpuMatMul.SumParts);
        _multiprocessors = Math.Max(1, _a.NumMultiprocessors);
        _partials = _a.Allocate1D<float>(1);
        _rmsNorm = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(GpuOps.RmsNorm);
        _siluMul = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GpuOps.SiluMul);
        _embedF32 = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int>(GpuOps.EmbedF32);
        _embedBF16 = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, ArrayView<int>, int>(GpuOps.EmbedBF16);
        _gather = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int>(GpuOps.GatherRows);
        _argmax = _a.LoadStreamKernel<ArrayView<int>, ArrayView<float>, int>(GpuOps.Argmax);
        _sample = _a.LoadStreamKernel<ArrayView<DeviceSample>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceSampleRow>,
            ArrayView<uint>, ArrayView<int>, ArrayView<float>, int>(GpuSampling.Sample);
        _attend = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, PagedKvShape, AttentionShape>(GpuAttention.Attend);
        _ropeWriteKv = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, PagedKvShape, RopeShape>(GpuAttention.RopeWriteKv);
        _shrink = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, LoraShape>(GpuLora.Shrink);
        _expand = _a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, LoraShape>(GpuLora.Expand);
    }

    private KernelConfig Groups(int groups) => new(groups, _g);

    /// <summary>Which matmul kernel <see cref="MatMul"/> runs for n token rows.</summary>
    public string MatMulKernel(int n) => n <= DecodeRows ? "rows" : _g == GpuMatMul.Tile64Threads ? "tile64" : "tiled";

    /// <summary>Warps in flight the decode kernel aims for (an H100/H200 holds 132 × 64; a quarter of that covers the
    /// memory latency).</summary>
    private const int RowsWarpsWanted = 2048;

    /// <summary>How many warps share each four outputs of the decode kernel for a matrix of <paramref name="rows"/>
    /// outputs: a power of two up to the warps of a group, so that about <see cref="RowsWarpsWanted"/> warps run.</summary>
    public int RowsSplit(int rows)
    {
        int split = 1, quads = (rows + GpuMatMul.RowsPerWarp - 1) / GpuMatMul.RowsPerWarp;
        while (split < _warpsPerGroup && quads * split < RowsWarpsWanted) split *= 2;
        return split;
    }

    /// <summary>Into how many stretches of the inner dimension <c>Tile64</c> splits a matmul: a power of two up to 16,
    /// while its tiles fill fewer than two groups per multiprocessor and each stretch keeps at least 8 steps of
    /// <see cref="GpuMatMul.TileK"/> columns (few tiles leave most of the machine idle, each walking the whole inner
    /// dimension one latency-bound step at a time).</summary>
    public int Tile64Split(int rows, int n, int cols)
    {
        int tiles = (rows + GpuMatMul.Tile - 1) / GpuMatMul.Tile * ((n + GpuMatMul.Tile - 1) / GpuMatMul.Tile), split = 1;
        while (split < 16 && tiles * split < 2 * _multiprocessors && cols / (2 * split) >= 8 * GpuMatMul.TileK) split *= 2;
        return split;
    }

    /// <summary>y (n, w.Rows) = x (n, w.Cols) · Wᵀ, or y += x · Wᵀ with <paramref name="accumulate"/>.</summary>
    public void MatMul(ArrayView<float> y, ArrayView<float> x, DeviceMatrix w, int n, bool accumulate = false) =>
        MatMul(MatMulOut.One(y, w.Rows), x, w, n, accumulate);

    /// <summary>x (n, w.Cols) · Wᵀ (+ bias) for stacked weights, its outputs [0, split1) to y1 (n, split1), [split1,
    /// split2) to y2 and the rest to y3 (q, k and v, or gate and up, in one launch).</summary>
    public void MatMulSplit(ArrayView<float> y1, ArrayView<float> y2, ArrayView<float> y3, ArrayView<float>? bias,
        ArrayView<float> x, DeviceMatrix w, int n, int split1, int split2)
    {
        if (split1 < 0 || split2 < split1 || split2 > w.Rows) throw new ArgumentOutOfRangeException(nameof(split2), $"splits {split1}, {split2} of {w.Rows} rows");
        MatMul(new MatMulOut(y1, y2, y3, bias ?? y1, split1, split2, bias is null ? 0 : 1), x, w, n, accumulate: false);
    }

    private void MatMul(MatMulOut y, ArrayView<float> x, DeviceMatrix w, int n, bool accumulate)
    {
        bool pairs = w.Cols % 2 == 0 && ((IContiguousArrayView)x).IndexInBytes % 8 == 0;
        var s = new MatMulShape(n, w.Rows, w.Cols, pairs ? 1 : 0, accumulate ? 1 : 0);
        switch (MatMulKernel(n))
        {
            case "rows":
                int split = RowsSplit(w.Rows), perGroup = _warpsPerGroup / split * GpuMatMul.RowsPerWarp;
                var rows = Groups((w.Rows + perGroup - 1) / perGroup);
                if (w.IsBF16) _rowsBF16(rows, y, x, new BF16Weights(w.BF16), s, split);
                else _rowsF32(rows, y, x, new F32Weights(w.F32), s, split);
                break;
            case "tile64":
                int parts = Tile64Split(w.Rows, n, w.Cols);
                long partial = parts == 1 ? 1 : (long)parts * n * w.Rows;
                if (_partials.Length < partial)
                {
                    _a.Synchronize(); // earlier launches may still read the old buffer
                    _partials.Dispose();
                    _partials = _a.Allocate1D<float>(partial);
                }
                var tiles = Groups((w.Rows + GpuMatMul.Tile - 1) / GpuMatMul.Tile * ((n + GpuMatMul.Tile - 1) / GpuMatMul.Tile) * parts);
                if (w.IsBF16) _tile64BF16(tiles, y, x, new BF16Weights(w.BF16), s, parts, _partials.View);
                else _tile64F32(tiles, y, x, new F32Weights(w.F32), s, parts, _partials.View);
                if (parts > 1) _sumParts(n * w.Rows, y, _partials.View, s, parts);
                break;
            default:
                var tiled = Groups((w.Rows + _g - 1) / _g * ((n + GpuMatMul.TileTokens - 1) / GpuMatMul.TileTokens));
                if (w.IsBF16) _tiledBF16(tiled, y, x, new BF16Weights(w.BF16), s);
                else _tiledF32(tiled, y, x, new F32Weights(w.F32), s);
                break;
        }
    }

    /// <summary>y (n, dim) = RMSNorm of each row of x (n, dim).</summary>
    public void RmsNorm(ArrayView<float> y, ArrayView<float> x, ArrayView<float> weight, int dim, float eps, int n) =>
        _rmsNorm(Groups(n), y, x, weight, dim, eps);

    public void SiluMul(ArrayView<float> y, ArrayView<float> gate, ArrayView<float> up, int count) => _siluMul(count, y, gate, up);

    public void Embed(ArrayView<float> x, DeviceMatrix embedding, ArrayView<int> tokens, int n)
    {
        int dim = embedding.Cols;
        if (embedding.IsBF16) _embedBF16(n * dim, x, embedding.BF16, tokens, dim);
        else _embedF32(n * dim, x, embedding.F32, tokens, dim);
    }

    public void GatherRows(ArrayView<float> dst, ArrayView<float> src, ArrayView<int> index, int width, int rows) =>
        _gather(rows * width, dst, src, index, width);

    /// <summary>ids (rows) = argmax of each row of x (rows, width).</summary>
    public void Argmax(ArrayView<int> ids, ArrayView<float> x, int width, int rows) => _argmax(Groups(rows), ids, x, width);

    /// <summary>Samples each row of logits (rows, vocab) as rows (rows) say: results (rows), topIds and topLogprobs (rows, 20);
    /// candKey/candIdx (rows, <see cref="DeviceSampling.MaxCandidates"/>) and weights (rows, vocab) are scratch.</summary>
    public void Sample(ArrayView<DeviceSample> results, ArrayView<int> topIds, ArrayView<float> topLogprobs, ArrayView<float> logits,
        ArrayView<DeviceSampleRow> rows, ArrayView<uint> candKey, ArrayView<int> candIdx, ArrayView<float> weights, int vocab, int count) =>
        _sample(Groups(count), results, topIds, topLogprobs, logits, rows, candKey, candIdx, weights, vocab);

    internal void Attention(ArrayView<float> output, ArrayView<float> q, ArrayView<float> pages, ArrayView<int> table,
        ArrayView<int> tableOffset, ArrayView<int> lengths, int tokens, PagedKvShape kv, AttentionShape s)
    {
        if (s.HeadDim > GpuAttention.MaxHeadDim) throw new NotSupportedException($"head_dim {s.HeadDim} exceeds the GPU attention kernel's {GpuAttention.MaxHeadDim}");
        _attend(Groups(tokens * s.Heads), output, q, pages, table, tableOffset, lengths, kv, s);
    }

    /// <summary>RoPE on q (n, heads*headDim) in place and on k (n, kvDim), and the rotated keys and the values v (n, kvDim)
    /// written into their pages at each token's position, in one launch.</summary>
    internal void RopeWriteKv(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> pages, ArrayView<int> table,
        ArrayView<int> tableOffset, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin, int tokens, PagedKvShape kv, RopeShape r) =>
        _ropeWriteKv(tokens * ((r.Heads + r.KvHeads) * (r.HeadDim / 2) + kv.KvDim), q, k, v, pages, table, tableOffset, positions, cos, sin, kv, r);

    internal void LoraShrink(ArrayView<float> scratch, ArrayView<float> x, ArrayView<float> pages, ArrayView<int> arena,
        ArrayView<int> modules, ArrayView<int> tokenSlot, int tokens, LoraShape s) =>
        _shrink(Groups(tokens * s.R), scratch, x, pages, arena, modules, tokenSlot, s);

    internal void LoraExpand(ArrayView<float> y, ArrayView<float> scratch, ArrayView<float> pages, ArrayView<int> arena,
        ArrayView<int> modules, ArrayView<float> scales, ArrayView<int> tokenSlot, int tokens, LoraShape s) =>
        _expand(tokens * s.Out, y, scratch, pages, arena, modules, scales, tokenSlot, s);
}
