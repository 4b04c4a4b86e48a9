using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Inference.Training;

/// <summary>Forward and backward passes of one training row through the frozen base model (its weights read where
/// inference reads them, never copied) with dense LoRA pairs on the trained modules. Reads top to bottom like
/// <see cref="Transformer.Forward"/>: embed → layers → head and loss → layers backward. The last
/// <see cref="StoredLayers"/> layers keep their activations; earlier layers keep only their input and are recomputed in
/// the backward pass (bitwise the same values: same kernels, same inputs). Allocates nothing per call.</summary>
internal sealed partial class TrainingModel
{
    private const int HeadChunk = 128;     // trained positions per LM-head block (bounds the logits buffer; the LM head
                                           // is read once per block, forward and transposed)

    private readonly ModelConfig _c;
    private readonly ModelWeights _w;
    private readonly IKernels _k;
    private readonly SimdLevel _level;
    private readonly LoraParameters _p;
    private readonly RopeTable _rope;
    private readonly float _eps;

    public int MaxTokens { get; }
    /// <summary>Layers whose activations are kept (the last ones); the others are recomputed in the backward pass.</summary>
    public int StoredLayers { get; private set; }
    /// <summary>Layers whose activation sets are allocated (the most <see cref="StoredLayers"/> can be).</summary>
    public int AllocatedLayers { get; }
    private int _pendingStored;

    // the row
    private readonly int[] _tokens;      // (T) token ids
    private readonly int[] _positions;   // (T) position within its example
    private readonly int[] _starts;      // (T) row index of its example's first token (attention reaches back to it)
    private readonly int[] _targets;     // (T) next token to predict, or -1 when position t is not trained
    private int _T;

    // activations
    private readonly float[][] _xin;     // [layers + 1] (T, dim) residual stream entering each layer; [layers]: the last output
    private readonly LayerActivations[] _sets; // [StoredLayers (+1 scratch when recomputing)]
    private readonly LayerActivations[] _recomputed; // [layers] views of the scratch set with their own keys and values (the last: unused)

    // backward buffers
    private readonly float[] _dx;        // (T, dim) gradient of the residual stream
    private readonly float[] _dxn;       // (T, dim) gradient of a normed input
    private readonly float[] _tmpDim;    // (T, dim) projection outputs, transposed products
    private readonly float[] _dh;        // (T, hidden) gradient of h, then of gate
    private readonly float[] _dup;       // (T, hidden) gradient of up
    private readonly float[] _datt;      // (T, qDim)
    private readonly float[] _dq;        // (T, qDim)
    private readonly float[] _dk, _dv;   // (T, kvDim)
    private readonly float[] _dkHeads, _dvHeads; // (heads, T, hd)
    private readonly float[] _rowScratch;        // (heads, T)
    private readonly float[] _loraTmp;   // (T, r)
    private readonly float[] _normScratch; // (dim)
    // head buffers
    private readonly float[] _xf;        // (HeadChunk, dim) final-normed hidden states of trained positions
    private readonly float[] _logits;    // (HeadChunk, vocab) logits, overwritten by their gradient
    private readonly float[] _dxf;       // (HeadChunk, dim)
    private readonly int[] _headRows = new int[HeadChunk];
    private int _headCursor = -1;        // next row position of the loss head; -1: not started for this row

    public TrainingModel(Transformer model, LoraParameters p, int maxTokens, int storedLayers)
    {
        _c = model.Config;
        _w = model.Weights;
        _k = model.Kernels;
        _level = _k.Level;
        _p = p;
        _eps = (float)_c.RmsNormEps;
        MaxTokens = maxTokens;
        int L = _c.NumLayers;
        StoredLayers = AllocatedLayers = _pendingStored = Math.Clamp(storedLayers, 1, L);
        _rope = new RopeTable(_c, Math.Min(maxTokens, _c.MaxPositionEmbeddings));
        int T = maxTokens, dim = _c.HiddenSize, hid = _c.IntermediateSize;
        _tokens = new int[T]; _positions = new int[T]; _starts = new int[T]; _targets = new int[T];
        _xin = new float[L + 1][];
        for (int l = 0; l <= L; l++) _xin[l] = new float[T * dim];
        _sets = new LayerActivations[StoredLayers + 1]; // + a scratch set for recomputed layers
        for (int i = 0; i < _sets.Length; i++) _sets[i] = new LayerActivations(_c, T, p.Rank, p.Targets);
        // every layer that may be recomputed (all but the last) reads the scratch set through a view with its own keys
        // and values
        _recomputed = new LayerActivations[L];
        for (int l = 0; l < L - 1; l++) _recomputed[l] = new LayerActivations(_sets[AllocatedLayers], T, _c.KvDim);
        _dx = new float[T * dim]; _dxn = new float[T * dim]; _tmpDim = new float[T * dim];
        _dh = new float[T * hid]; _dup = new float[T * hid];
        _datt = new float[T * _c.QDim]; _dq = new float[T * _c.QDim];
        _dk = new float[T * _c.KvDim]; _dv = new float[T * _c.KvDim];
        _dkHeads = new float[_c.NumHeads * T * _c.HeadDim]; _dvHeads = new float[_c.NumHeads * T * _c.HeadDim];
        _rowScratch = new float[_c.NumHeads * T];
        _loraTmp = new float[T * p.Rank];
        _normScratch = new float[Math.Max(dim, 1)];
        _xf = new float[HeadChunk * dim]; _dxf = new float[HeadChunk * dim];
        _logits = new float[HeadChunk * _c.VocabSize];
    }

    /// <summary>Bytes of activations and buffers for rows of <paramref name="maxTokens"/> with <paramref name="storedLayers"/>
    /// layers kept (the rest recomputed).</summary>
    public static long BytesFor(ModelConfig c, int maxTokens, int rank, int targets, int storedLayers)
    {
        int L = c.NumLayers, s = Math.Clamp(storedLayers, 1, L);
        long sets = (s + 1) * LayerActivations.BytesFor(c, maxTokens, rank, targets);
        long T = maxTokens;
        long other = sizeof(float) * (T * c.HiddenSize * (L + 1 + 3) + 2 * T * c.KvDim * (L - 1) + T * c.IntermediateSize * 2 + T * c.QDim * 2 + T * c.KvDim * 2
            + 2L * c.NumHeads * T * c.HeadDim + c.NumHeads * T + T * rank + (long)HeadChunk * (2 * c.HiddenSize + c.VocabSize));
        return sets + other;
    }

    /// <summary>Bytes of activations and buffers with <paramref name="storedLayers"/> layers kept, for this model's rows.</summary>
    public long BytesFor(int storedLayers) => BytesFor(_c, MaxTokens, _p.Rank, _p.Targets.Count, storedLayers);

    /// <summary>Sets the row: examples packed one after another, each (tokens, loss mask). Token i of an example is trained
    /// when its mask is true (predicted from the example's tokens before it).</summary>
    public void SetRow(IReadOnlyList<TrainingExample> examples)
    {
        StoredLayers = _pendingStored;
        _headCursor = -1;
        int t = 0;
        foreach (var e in examples)
        {
            if (t + e.Length > MaxTokens) throw new ArgumentException($"a row of {t + e.Length} tokens exceeds the training context of {MaxTokens}");
            int start = t;
            for (int i = 0; i < e.Length; i++, t++)
            {
                _tokens[t] = e.TokenIds[i];
                _positions[t] = i;
                _starts[t] = start;
                _targets[t] = i + 1 < e.Length && e.LossMask[i + 1] ? e.TokenIds[i + 1] : -1;
            }
        }
        _T = t;
    }

    public int RowTokens => _T;

    /// <summary>Keeps at most <paramref name="layers"/> layers' activations from the next row on (at least one; never
    /// more than allocated); the rest are recomputed, with bitwise the same results.</summary>
    public void LimitStoredLayers(int layers) => _pendingStored = Math.Clamp(layers, 1, AllocatedLayers);

    public void Embed()
    {
        int dim = _c.HiddenSize;
        for (int t = 0; t < _T; t++) _w.Embedding.ReadRow(_tokens[t], _xin[0].AsSpan(t * dim, dim));
    }

    private LayerActivations SetOf(int layer)
    {
        int first = _c.NumLayers - StoredLayers;
        return layer >= first ? _sets[layer - first] : _recomputed[layer];
    }

    /// <summary>Whether layer l's activations are recomputed in the backward pass.</summary>
    public bool Recomputes(int layer) => layer < _c.NumLayers - StoredLayers;

    /// <summary>Layer l: _xin[l] → _xin[l + 1], keeping what the backward pass needs. The layer runs as its four
    /// stages over all rows (<see cref="ForwardStage"/>), each followed by its product through the base weights.</summary>
    public void ForwardLayer(int l)
    {
        for (int stage = 0; stage < StagesPerLayer; stage++) ProductOf(ForwardStage(l, stage, 0, _T));
        FinishLayer(l, 0, _T);
    }

    /// <summary>The loss head: final norm, LM head and cross-entropy of the trained positions, in blocks of
    /// <see cref="HeadChunk"/>. Returns the summed loss. With <paramref name="backward"/>, writes the gradient of
    /// (loss · gradScale) w.r.t. the last layer's output into the residual gradient (zero where untrained).</summary>
    public double Head(float gradScale, bool backward)
    {
        double loss = 0;
        while (!HeadBlock(gradScale, backward, ref loss, out _)) { }
        return loss;
    }

    /// <summary>One block of the loss head: up to <see cref="HeadChunk"/> trained positions from where the last block
    /// stopped (the first block of a row clears the residual gradient). Adds the block's summed loss to
    /// <paramref name="loss"/>; <paramref name="positions"/>: trained positions in the block. Returns true when the head
    /// is done for this row. Blocks in sequence compute exactly what <see cref="Head"/> computes.</summary>
    public bool HeadBlock(float gradScale, bool backward, ref double loss, out int positions)
    {
        int T = _T, dim = _c.HiddenSize, V = _c.VocabSize;
        var xl = _xin[_c.NumLayers];
        if (_headCursor < 0)
        {
            if (backward) Array.Clear(_dx, 0, T * dim);
            _headCursor = 0;
        }
        int t = _headCursor, n = 0;
        for (; t < T && n < HeadChunk; t++)
            if (_targets[t] >= 0) _headRows[n++] = t;
        _headCursor = t;
        positions = n;
        if (n > 0)
        {
            for (int i = 0; i < n; i++)
                _k.RmsNorm(_xf.AsSpan(i * dim, dim), xl.AsSpan(_headRows[i] * dim, dim), _w.FinalNorm, _eps, 1);
            _k.MatMul(_logits, _xf, _w.LmHead, n);
            for (int i = 0; i < n; i++)
            {
                var lg = _logits.AsSpan(i * V, V);
                int target = _targets[_headRows[i]];
                loss += _level == SimdLevel.Scalar ? NaiveBackwardOps.CrossEntropy(lg, lg, target, gradScale) : BackwardOps.CrossEntropy(lg, lg, target, gradScale);
            }
            if (backward)
            {
                MatMulTransposedKernel.Forward(_dxf, _logits, _w.LmHead, n, _level);
                for (int i = 0; i < n; i++)
                {
                    int row = _headRows[i];
                    RmsNormBackward(_dx.AsSpan(row * dim, dim), _dxf.AsSpan(i * dim, dim), xl.AsSpan(row * dim, dim), _w.FinalNorm, accumulate: false);
                }
            }
        }
        if (n > 0 && t < T) return false;
        _headCursor = -1;
        return true;
    }

    /// <summary>Layer l backward: the residual gradient at its output (in _dx) becomes the gradient at its input; LoRA
    /// gradients are added to the modules. Layer 0 skips the gradient of its input (the embeddings are frozen).</summary>
    public void BackwardLayer(int l)
    {
        if (Recomputes(l)) ForwardLayer(l);
        var c = _c;
        var L = _w.Layers[l];
        var a = SetOf(l);
        int T = _T, dim = c.HiddenSize, qDim = c.QDim, kvDim = c.KvDim, hid = c.IntermediateSize, hd = c.HeadDim;
        bool inputGrad = l > 0;

        // mlp: x_out = x_mid + down(silu(gate(xn2)) · up(xn2))
        MatMulTransposedKernel.Forward(_dh, _dx, L.Down.Weight, T, _level);
        LoraBackward(_dh, _dx, a.H, a, l, LoraTarget.DownProj);
        if (_level == SimdLevel.Scalar) NaiveBackwardOps.SiluMul(_dh.AsSpan(0, T * hid), _dup.AsSpan(0, T * hid), _dh.AsSpan(0, T * hid), a.G.AsSpan(0, T * hid), a.Up.AsSpan(0, T * hid));
        else BackwardOps.SiluMul(_dh.AsSpan(0, T * hid), _dup.AsSpan(0, T * hid), _dh.AsSpan(0, T * hid), a.G.AsSpan(0, T * hid), a.Up.AsSpan(0, T * hid));
        MatMulTransposedKernel.Forward(_dxn, _dh, L.Gate.Weight, T, _level);
        LoraBackward(_dxn, _dh, a.Xn2, a, l, LoraTarget.GateProj);
        MatMulTransposedKernel.Forward(_tmpDim, _dup, L.Up.Weight, T, _level);
        System.Numerics.Tensors.TensorPrimitives.Add(_dxn.AsSpan(0, T * dim), _tmpDim.AsSpan(0, T * dim), _dxn.AsSpan(0, T * dim));
        LoraBackward(_dxn, _dup, a.Xn2, a, l, LoraTarget.UpProj);
        for (int t = 0; t < T; t++)
            RmsNormBackward(_dx.AsSpan(t * dim, dim), _dxn.AsSpan(t * dim, dim), a.Xmid.AsSpan(t * dim, dim), L.MlpNorm, accumulate: true);

        // attention: x_mid = x_in + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1)))
        MatMulTransposedKernel.Forward(_datt, _dx, L.O.Weight, T, _level);
        LoraBackward(_datt, _dx, a.Att, a, l, LoraTarget.OProj);
        TrainingAttention.Backward(_dq, _dk, _dv, _datt, a.P, a.Q, a.K, a.V, _starts, T, c.NumHeads, c.NumKvHeads, hd,
            _dkHeads, _dvHeads, _rowScratch, _level);
        for (int t = 0; t < T; t++)
        {
            int pos = _positions[t];
            BackwardOps.RopeInverse(_dq.AsSpan(t * qDim, qDim), c.NumHeads, hd, _rope.Cos(pos), _rope.Sin(pos));
            BackwardOps.RopeInverse(_dk.AsSpan(t * kvDim, kvDim), c.NumKvHeads, hd, _rope.Cos(pos), _rope.Sin(pos));
        }
        if (inputGrad)
        {
            MatMulTransposedKernel.Forward(_dxn, _dq, L.Q.Weight, T, _level);
            MatMulTransposedKernel.Forward(_tmpDim, _dk, L.K.Weight, T, _level);
            System.Numerics.Tensors.TensorPrimitives.Add(_dxn.AsSpan(0, T * dim), _tmpDim.AsSpan(0, T * dim), _dxn.AsSpan(0, T * dim));
            MatMulTransposedKernel.Forward(_tmpDim, _dv, L.V.Weight, T, _level);
            System.Numerics.Tensors.TensorPrimitives.Add(_dxn.AsSpan(0, T * dim), _tmpDim.AsSpan(0, T * dim), _dxn.AsSpan(0, T * dim));
        }
        var dxn = inputGrad ? _dxn : [];
        LoraBackward(dxn, _dq, a.Xn1, a, l, LoraTarget.QProj);
        LoraBackward(dxn, _dk, a.Xn1, a, l, LoraTarget.KProj);
        LoraBackward(dxn, _dv, a.Xn1, a, l, LoraTarget.VProj);
        if (!inputGrad) return;
        var xin = _xin[l];
        for (int t = 0; t < T; t++)
            RmsNormBackward(_dx.AsSpan(t * dim, dim), _dxn.AsSpan(t * dim, dim), xin.AsSpan(t * dim, dim), L.AttnNorm, accumulate: true);
    }

    private void RmsNormBackward(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, bool accumulate)
    {
        if (_level == SimdLevel.Scalar) NaiveBackwardOps.RmsNorm(dx, dy, x, w, _eps, accumulate);
        else BackwardOps.RmsNorm(dx, dy, x, w, _eps, _normScratch, accumulate);
    }

    /// <summary>Rows [r0, r0 + n) of y (T, out) += scale · (x Aᵀ) Bᵀ, keeping x Aᵀ for the backward pass.</summary>
    private void Lora(LayerActivations a, float[] y, float[] x, int layer, LoraTarget target, int r0, int n)
    {
        if (_p.Find(layer, target) is not { } m) return;
        var u = a.U[(int)target];
        LoraTrainingKernel.Shrink(u.AsSpan(r0 * m.Rank), x.AsSpan(r0 * m.In), m.A, n, m.Rank, m.In, _level);
        LoraTrainingKernel.Expand(y.AsSpan(r0 * m.Out), u.AsSpan(r0 * m.Rank), m.Bt, _p.Scale, n, m.Rank, m.Out, _level);
    }

    /// <summary>Adds the module's LoRA gradients for output gradient dY and input x; dx (T, in) += the LoRA part of the
    /// input gradient (skipped when dx is empty).</summary>
    private void LoraBackward(Span<float> dx, float[] dY, float[] x, LayerActivations a, int layer, LoraTarget target)
    {
        if (_p.Find(layer, target) is not { } m) return;
        LoraTrainingKernel.Backward(dx, m.GA, m.GBt, _loraTmp, dY, x, a.U[(int)target], m.A, m.Bt, _p.Scale, _T, m.Rank, m.In, m.Out, _level);
    }

    /// <summary>Rows [r0, r0 + n) of y += bias.</summary>
    private static void AddBias(float[] y, Linear p, int r0, int n)
    {
        if (p.Bias is not { } bias) return;
        int o = p.Weight.Rows;
        for (int i = r0; i < r0 + n; i++) Kernels.Ops.AddInPlace(y.AsSpan(i * o, o), bias);
    }
}
