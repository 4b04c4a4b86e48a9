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

    public DeviceMatrix(Accelerator a, WeightMatrix w)
    {
        Rows = w.Rows;
        Cols = w.Cols;
        long count = w.ElementCount;
        if (w.Type != WeightType.BF16)
        {
            _f32 = a.Allocate1D<float>(count);
            if (!w.Packed) _f32.View.CopyFromCPU(ref *(float*)w.Data, count);
            else _f32.View.CopyFromCPU(w.ToFloats());
        }
        else
        {
            _bf16 = a.Allocate1D<ushort>(count);
            if (!w.Packed) _bf16.View.CopyFromCPU(ref *(ushort*)w.Data, count);
            else
            {
                var rows = new ushort[count];
                for (int r = 0; r < Rows; r++)
                    for (int k = 0; k < Cols; k++) rows[(long)r * Cols + k] = ((ushort*)w.Data)[w.IndexOf(r, k)];
                _bf16.View.CopyFromCPU(rows);
            }
        }
    }

    public void Dispose()
    {
        _f32?.Dispose();
        _bf16?.Dispose();
    }
}
