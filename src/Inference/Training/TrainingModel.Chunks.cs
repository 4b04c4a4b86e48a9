using System.Numerics.Tensors;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Inference.Training;

/// <summary>The forward pass in stages over a range of rows, so that a row can also go forward chunk by chunk (every
/// layer for rows [r0, r1), then the next rows): a layer is four stages, each the element-wise and small work before one
/// product through the base weights (q/k/v, o, gate/up, down), then that product; <see cref="FinishLayer"/> adds the
/// last residual. Every operation computes a row from that row's inputs alone (attention from the keys and values of the
/// rows before it), with the same kernels at the same buffer offsets, so a chunked forward gives bitwise the activations
/// of <see cref="ForwardLayer"/> over the whole row. The products of a chunk can ride along with an inference pass
/// (<see cref="ChunkRide"/>).</summary>
internal sealed partial class TrainingModel
{
    public const int StagesPerLayer = 4;
    private const int SiluBlock = 256;   // Ops.SiluMul's block: a range's SiLU runs over the same blocks as the whole row's


    private ChunkRide? _chunk;   // the one chunk, reused

    /// <summary>Rows of the current row whose forward pass is done through every layer (a chunked forward).</summary>
    public int ChunkedRows { get; private set; }

    /// <summary>Starts a chunked forward of the row set by <see cref="SetRow"/> (after <see cref="Embed"/>). A recomputed
    /// layer keeps its keys and values of the earlier chunks in its own buffers; its other activations are computed
    /// again for the whole row in the backward pass, as after a layer-by-layer forward.</summary>
    public void BeginChunks() => ChunkedRows = 0;

    /// <summary>The next chunk of up to <paramref name="rows"/> rows (a multiple of 8), to run standalone
    /// (<see cref="ChunkRide.Complete"/>) or riding along with an inference pass.</summary>
    public ChunkRide NextChunk(int rows)
    {
        if (rows <= 0 || rows % 8 != 0) throw new ArgumentOutOfRangeException(nameof(rows), "a chunk is whole 8-row tiles");
        if (ChunkedRows >= _T) throw new InvalidOperationException("the row's forward pass is done");
        _chunk ??= new ChunkRide(this);
        if (!_chunk.Completed) throw new InvalidOperationException("the previous chunk is not complete");
        return _chunk.For(ChunkedRows, Math.Min(_T, ChunkedRows + rows));
    }

    /// <summary>Called by a chunk's ride when it has gone through every layer.</summary>
    internal void ChunkDone(int r1) => ChunkedRows = r1;

    /// <summary>Runs the work of layer l's stage before its product over rows [r0, r1) and returns the product.</summary>
    public RiderRows ForwardStage(int l, int stage, int r0, int r1)
    {
        var c = _c;
        var L = _w.Layers[l];
        var a = SetOf(l);
        int n = r1 - r0, dim = c.HiddenSize, qDim = c.QDim, kvDim = c.KvDim, hid = c.IntermediateSize, hd = c.HeadDim;
        var x = _xin[l];
        switch (stage)
        {
            case 0: // attention norm → q, k, v
                _k.RmsNorm(a.Xn1.AsSpan(r0 * dim), x.AsSpan(r0 * dim), L.AttnNorm, _eps, n);
                return new RiderRows(a.Xn1, a.Q, a.K, a.V, r0, n, L.Q.Weight, L.K.Weight, L.V.Weight);
            case 1: // bias, LoRA, RoPE, attention → o
                AddBias(a.Q, L.Q, r0, n); AddBias(a.K, L.K, r0, n); AddBias(a.V, L.V, r0, n);
                Lora(a, a.Q, a.Xn1, l, LoraTarget.QProj, r0, n);
                Lora(a, a.K, a.Xn1, l, LoraTarget.KProj, r0, n);
                Lora(a, a.V, a.Xn1, l, LoraTarget.VProj, r0, n);
                for (int t = r0; t < r1; t++)
                {
                    int pos = _positions[t];
                    _k.Rope(a.Q.AsSpan(t * qDim, qDim), c.NumHeads, hd, _rope.Cos(pos), _rope.Sin(pos));
                    _k.Rope(a.K.AsSpan(t * kvDim, kvDim), c.NumKvHeads, hd, _rope.Cos(pos), _rope.Sin(pos));
                }
                TrainingAttention.Forward(a.Att, a.P, a.Q, a.K, a.V, _starts, _T, c.NumHeads, c.NumKvHeads, hd, _level, r0, r1);
                return new RiderRows(a.Att, _tmpDim, null, null, r0, n, L.O.Weight);
            case 2: // o's bias and LoRA, residual, mlp norm → gate, up
                AddBias(_tmpDim, L.O, r0, n);
                Lora(a, _tmpDim, a.Att, l, LoraTarget.OProj, r0, n);
                TensorPrimitives.Add(x.AsSpan(r0 * dim, n * dim), _tmpDim.AsSpan(r0 * dim, n * dim), a.Xmid.AsSpan(r0 * dim, n * dim));
                _k.RmsNorm(a.Xn2.AsSpan(r0 * dim), a.Xmid.AsSpan(r0 * dim), L.MlpNorm, _eps, n);
                return new RiderRows(a.Xn2, a.G, a.Up, null, r0, n, L.Gate.Weight, L.Up.Weight);
            case 3: // LoRA, SiLU · up → down
            {
                Lora(a, a.G, a.Xn2, l, LoraTarget.GateProj, r0, n);
                Lora(a, a.Up, a.Xn2, l, LoraTarget.UpProj, r0, n);
                // over whole blocks of the row's SiLU (a block that runs into later rows computes them from stale
                // values; their own chunk computes them again): the same blocks, so the same values, as the whole row
                int e0 = r0 * hid / SiluBlock * SiluBlock, e1 = Math.Min(_T * hid, (r1 * hid + SiluBlock - 1) / SiluBlock * SiluBlock);
                _k.SiluMul(a.H.AsSpan(e0, e1 - e0), a.G.AsSpan(e0, e1 - e0), a.Up.AsSpan(e0, e1 - e0));
                return new RiderRows(a.H, _tmpDim, null, null, r0, n, L.Down.Weight);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(stage));
        }
    }

    /// <summary>The product of a stage on its own (the same kernel call as a product of the whole row, at the rows' offsets).</summary>
    public void ProductOf(in RiderRows r)
    {
        int r0 = r.Row0, n = r.Rows, cols = r.W1.Cols;
        var x = r.X.AsSpan(r0 * cols);
        if (r.W2 is null) _k.MatMul(r.Y1.AsSpan(r0 * r.W1.Rows), x, r.W1, n);
        else _k.MatMul(r.Y1.AsSpan(r0 * r.W1.Rows), r.W1, r.Y2!.AsSpan(r0 * r.W2.Rows), r.W2,
            r.W3 is null ? default : r.Y3!.AsSpan(r0 * r.W3.Rows), r.W3, x, n);
    }

    /// <summary>Layer l's last residual over rows [r0, r1): LoRA of down, then the layer's output.</summary>
    public void FinishLayer(int l, int r0, int r1)
    {
        var a = SetOf(l);
        int n = r1 - r0, dim = _c.HiddenSize;
        Lora(a, _tmpDim, a.H, l, LoraTarget.DownProj, r0, n);
        TensorPrimitives.Add(a.Xmid.AsSpan(r0 * dim, n * dim), _tmpDim.AsSpan(r0 * dim, n * dim), _xin[l + 1].AsSpan(r0 * dim, n * dim));
    }

    /// <summary>The first product weight of layer l's stage (how a ride recognises its product in an inference pass).</summary>
    public WeightMatrix StageWeight(int l, int stage)
    {
        var L = _w.Layers[l];
        return stage switch { 0 => L.Q.Weight, 1 => L.O.Weight, 2 => L.Gate.Weight, _ => L.Down.Weight };
    }

    public int Layers => _c.NumLayers;

    /// <summary>Layer l's kept activations (tests).</summary>
    internal LayerActivations ActivationsOf(int l) => SetOf(l);

    /// <summary>(T, dim) the residual stream entering layer l; l = layers: the last layer's output (tests).</summary>
    internal float[] LayerInput(int l) => _xin[l];
}
