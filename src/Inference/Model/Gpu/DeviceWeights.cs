using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Kernels.Gpu;

namespace Loom.Inference.Model.Gpu;

/// <summary>One layer's weights in device memory.</summary>
internal sealed record DeviceLayer(
    MemoryBuffer1D<float, Stride1D.Dense> AttnNorm, // (dim)
    DeviceMatrix Q, DeviceMatrix K, DeviceMatrix V, DeviceMatrix O,
    MemoryBuffer1D<float, Stride1D.Dense>? QBias, MemoryBuffer1D<float, Stride1D.Dense>? KBias, MemoryBuffer1D<float, Stride1D.Dense>? VBias,
    MemoryBuffer1D<float, Stride1D.Dense> MlpNorm, // (dim)
    DeviceMatrix Gate, DeviceMatrix Up, DeviceMatrix Down);

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
        DeviceMatrix M(Kernels.WeightMatrix m)
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
        MemoryBuffer1D<float, Stride1D.Dense>? Bias(Linear p) => p.Bias is { } b ? V(b) : null;

        Embedding = M(w.Embedding);
        LmHead = ReferenceEquals(w.LmHead, w.Embedding) ? Embedding : M(w.LmHead);
        Layers = w.Layers.Select(l => new DeviceLayer(V(l.AttnNorm), M(l.Q.Weight), M(l.K.Weight), M(l.V.Weight), M(l.O.Weight),
            Bias(l.Q), Bias(l.K), Bias(l.V), V(l.MlpNorm), M(l.Gate.Weight), M(l.Up.Weight), M(l.Down.Weight))).ToList();
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
