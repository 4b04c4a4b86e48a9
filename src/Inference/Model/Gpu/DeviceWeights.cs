using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Kernels.Gpu;

namespace Loom.Inference.Model.Gpu;

/// <summary>One layer's weights in device memory; q, k and v stacked into one matrix, gate and up into another, so
/// each is one launch (<see cref="GpuKernels.MatMulSplit"/>).</summary>
internal sealed record DeviceLayer(
    MemoryBuffer1D<float, Stride1D.Dense> AttnNorm, // (dim)
    DeviceMatrix Qkv,                               // (qDim + 2 kvDim, dim): q, k, v rows
    MemoryBuffer1D<float, Stride1D.Dense>? QkvBias, // (qDim + 2 kvDim), zeros where a projection has none
    DeviceMatrix O,
    MemoryBuffer1D<float, Stride1D.Dense> MlpNorm, // (dim)
    DeviceMatrix GateUp,                            // (2 hidden, dim): gate rows, then up rows
    DeviceMatrix Down);

/// <summary>All of a model's weights, uploaded once (f32 or bf16 as the host holds them), with the RoPE tables.</summary>
internal sealed class DeviceWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public DeviceMatrix Embedding { get; }                         // (vocab, dim)
    public DeviceMatrix LmHead { get; }                            // (vocab, dim); the embedding when tied
    public IReadOnlyList<DeviceLayer> Layers { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> FinalNorm { get; } // (dim)
    public MemoryBuffer1D<float, Stride1D.Dense> RopeCos { get; }   // (positions, headDim/2)
    public MemoryBuffer1D<float, Stride1D.Dense> RopeSin { get; }   // (positions, headDim/2)
    public long Bytes { get; private set; }

    public DeviceWeights(Accelerator a, ModelWeights w, int positions)
    {
        DeviceMatrix M(params Kernels.WeightMatrix[] m)
        {
            var d = new DeviceMatrix(a, m);
            _owned.Add(d);
            Bytes += d.Bytes;
            return d;
        }
        MemoryBuffer1D<float, Stride1D.Dense> V(ReadOnlySpan<float> v)
        {
            var b = a.Allocate1D<float>(v.Length);
            b.AsContiguous().CopyFromCPU(v);
            _owned.Add(b);
            Bytes += v.Length * 4L;
            return b;
        }
        MemoryBuffer1D<float, Stride1D.Dense>? Biases(params Linear[] ps)
        {
            if (ps.All(p => p.Bias is null)) return null;
            var all = new float[ps.Sum(p => p.Weight.Rows)];
            int at = 0;
            foreach (var p in ps)
            {
                p.Bias?.CopyTo(all, at);
                at += p.Weight.Rows;
            }
            return V(all);
        }

        Embedding = M(w.Embedding);
        LmHead = ReferenceEquals(w.LmHead, w.Embedding) ? Embedding : M(w.LmHead);
        Layers = w.Layers.Select(l => new DeviceLayer(V(l.AttnNorm), M(l.Q.Weight, l.K.Weight, l.V.Weight), Biases(l.Q, l.K, l.V),
            M(l.O.Weight), V(l.MlpNorm), M(l.Gate.Weight, l.Up.Weight), M(l.Down.Weight))).ToList();
        foreach (var l in w.Layers)
            if (l.O.Bias is not null || l.Gate.Bias is not null || l.Up.Bias is not null || l.Down.Bias is not null)
                throw new NotSupportedException("the GPU backend supports biases on q/k/v only (as the model families served)");
        FinalNorm = V(w.FinalNorm);
        var rope = new RopeTable(w.Config, positions);
        int half = w.Config.HeadDim / 2;
        var cos = new float[(long)positions * half];
        var sin = new float[(long)positions * half];
        for (int p = 0; p < positions; p++)
        {
            rope.Cos(p).CopyTo(cos.AsSpan(p * half, half));
            rope.Sin(p).CopyTo(sin.AsSpan(p * half, half));
        }
        RopeCos = V(cos);
        RopeSin = V(sin);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
