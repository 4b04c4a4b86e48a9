using ILGPU;
using ILGPU.Runtime;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>A row-major (Rows, Cols) weight matrix in device memory, f32 or bf16 (ushort bit patterns), uploaded once
/// from a <see cref="WeightMatrix"/> (the packed CPU layout is unpacked on the way; Q8 is widened to its exact f32
/// values, so a q8 model runs on the GPU with the f32 kernels at f32's size).</summary>
public sealed unsafe class DeviceMatrix : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _f32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _bf16;

    public int Rows { get; }
    public int Cols { get; }
    public bool IsBF16 => _bf16 is not null;
    public long Bytes => (long)Rows * Cols * (IsBF16 ? 2 : 4);
    internal ArrayView<float> F32 => _f32!.View;
    internal ArrayView<ushort> BF16 => _bf16!.View;

    public DeviceMatrix(Accelerator a, WeightMatrix w) : this(a, [w]) { }

    /// <summary>The rows of <paramref name="parts"/> stacked in order (same columns, all bf16 or none): q, k and v (or
    /// gate and up) as one matrix, so one launch computes them.</summary>
    public DeviceMatrix(Accelerator a, IReadOnlyList<WeightMatrix> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("no matrices to upload", nameof(parts));
        Cols = parts[0].Cols;
        bool bf16 = parts[0].Type == WeightType.BF16;
        foreach (var p in parts)
        {
            if (p.Cols != Cols) throw new ArgumentException($"stacked matrices need one width: {p.Cols} and {Cols} columns", nameof(parts));
            if ((p.Type == WeightType.BF16) != bf16) throw new ArgumentException("stacked matrices need one storage type", nameof(parts));
            Rows += p.Rows;
        }
        long count = (long)Rows * Cols, at = 0;
        if (bf16) _bf16 = a.Allocate1D<ushort>(count);
        else _f32 = a.Allocate1D<float>(count);
        foreach (var w in parts)
        {
            long n = w.ElementCount;
            if (!bf16)
            {
                var view = _f32!.View.SubView(at, n);
                if (!w.Packed && w.Type == WeightType.F32) view.CopyFromCPU(ref *(float*)w.Data, n);
                else view.CopyFromCPU(w.ToFloats());
            }
            else
            {
                var view = _bf16!.View.SubView(at, n);
                if (!w.Packed) view.CopyFromCPU(ref *(ushort*)w.Data, n);
                else
                {
                    var rows = new ushort[n];
                    for (int r = 0; r < w.Rows; r++)
                        for (int k = 0; k < w.Cols; k++) rows[(long)r * w.Cols + k] = ((ushort*)w.Data)[w.IndexOf(r, k)];
                    view.CopyFromCPU(rows);
                }
            }
            at += n;
        }
    }

    public void Dispose()
    {
        _f32?.Dispose();
        _bf16?.Dispose();
    }
}
