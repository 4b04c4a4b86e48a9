using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Sampling;

namespace Loom.Inference.Model.Gpu;

/// <summary>Samples rows of logits that are on the device (<see cref="GpuSampling"/>): the rows' parameters go up, and
/// only the tokens, their logprobs and the top alternatives asked for come back. Buffers are allocated once for a number
/// of rows and a vocabulary.</summary>
public sealed class DeviceSampler : IDisposable
{
    private readonly GpuKernels _k;
    private readonly MemoryBuffer1D<DeviceSampleRow, Stride1D.Dense> _rows;  // (maxRows)
    private readonly MemoryBuffer1D<DeviceSample, Stride1D.Dense> _results;  // (maxRows)
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _topIds;            // (maxRows, 20)
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _topLogprobs;     // (maxRows, 20)
    private readonly MemoryBuffer1D<uint, Stride1D.Dense> _candKey;          // (maxRows, MaxCandidates)
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _candIdx;           // (maxRows, MaxCandidates)
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _weights;         // (maxRows, vocab) top-p weights

    public int MaxRows { get; }
    public int Vocab { get; }
    /// <summary>Bytes this sampler copied device → host so far (results and top alternatives).</summary>
    public long BytesToHost { get; private set; }

    public DeviceSampler(GpuKernels kernels, int maxRows, int vocab)
    {
        _k = kernels;
        MaxRows = maxRows;
        Vocab = vocab;
        var a = kernels.Device.Accelerator;
        _rows = a.Allocate1D<DeviceSampleRow>(maxRows);
        _results = a.Allocate1D<DeviceSample>(maxRows);
        _topIds = a.Allocate1D<int>((long)maxRows * DeviceSampling.MaxTopLogprobs);
        _topLogprobs = a.Allocate1D<float>((long)maxRows * DeviceSampling.MaxTopLogprobs);
        _candKey = a.Allocate1D<uint>((long)maxRows * DeviceSampling.MaxCandidates);
        _candIdx = a.Allocate1D<int>((long)maxRows * DeviceSampling.MaxCandidates);
        _weights = a.Allocate1D<float>((long)maxRows * vocab);
    }

    /// <summary>Samples the first <paramref name="count"/> rows of <paramref name="logits"/> (count, vocab) whose
    /// <see cref="DeviceSampleBatch.Rows"/> entry is on the device, into <paramref name="batch"/>'s results (waits for
    /// them). Rows not on the device are left alone.</summary>
    public void Sample(ArrayView<float> logits, DeviceSampleBatch batch, int count)
    {
        if (count > MaxRows || count > batch.Capacity) throw new ArgumentOutOfRangeException(nameof(count), $"{count} rows (room for {Math.Min(MaxRows, batch.Capacity)})");
        if (logits.Length < (long)count * Vocab) throw new ArgumentException("the logits hold fewer rows than asked", nameof(logits));
        bool any = false, alternatives = false;
        for (int i = 0; i < count; i++)
        {
            var r = batch.Rows[i];
            if (!r.OnDevice) continue;
            any = true;
            alternatives |= r.TopLogprobs > 0;
        }
        if (!any) return;
        _rows.AsContiguous().SubView(0, count).CopyFromCPU(batch.Rows.AsSpan(0, count));
        _k.Sample(_results.View, _topIds.View, _topLogprobs.View, logits, _rows.View, _candKey.View, _candIdx.View, _weights.View, Vocab, count);
        _results.AsContiguous().SubView(0, count).CopyToCPU(batch.Results.AsSpan(0, count));
        long bytes = (long)count * Unsafe.SizeOf<DeviceSample>();
        if (alternatives)
        {
            int n = count * DeviceSampling.MaxTopLogprobs;
            _topIds.AsContiguous().SubView(0, n).CopyToCPU(batch.TopIds.AsSpan(0, n));
            _topLogprobs.AsContiguous().SubView(0, n).CopyToCPU(batch.TopLogprobs.AsSpan(0, n));
            bytes += n * 8L;
        }
        BytesToHost += bytes;
    }

    public void Dispose()
    {
        _rows.Dispose();
        _results.Dispose();
        _topIds.Dispose();
        _topLogprobs.Dispose();
        _candKey.Dispose();
        _candIdx.Dispose();
        _weights.Dispose();
    }
}
