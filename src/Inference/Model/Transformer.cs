using Loom.Inference.Formats;
using Loom.Inference.Kernels;

namespace Loom.Inference.Model;

/// <summary>The Llama-family decoder: RMSNorm, GQA attention with RoPE over a KV cache, SwiGLU MLP,
/// optional q/k/v bias (qwen2), tied or separate LM head. Stateless apart from its weights: all
/// per-batch memory is in a <see cref="ForwardState"/>.</summary>
public sealed class Transformer : IDisposable
{
    private readonly RopeTable _rope;

    public ModelConfig Config { get; }
    public ModelWeights Weights { get; }
    public IKernels Kernels { get; }
    /// <summary>Longest sequence (prompt + generated) this instance can run.</summary>
    public int MaxContext { get; }
    /// <summary>Where Forward runs when not on the CPU kernels (null: the CPU kernels).</summary>
    public IForwardBackend? Backend { get; private set; }
    /// <summary>What runs the forward pass, for logs and /admin/engine.</summary>
    public string BackendDescription => Backend?.Description ?? $"cpu: SIMD kernels ({Kernels.Level}, {Environment.ProcessorCount} cores)";

    public Transformer(ModelWeights weights, IKernels? kernels = null, int maxContext = 4096)
    {
        Weights = weights;
        Config = weights.Config;
        Kernels = kernels ?? new CpuKernels();
        MaxContext = Math.Min(maxContext, Config.MaxPositionEmbeddings);
        _rope = new RopeTable(Config, MaxContext);
    }

    /// <summary>Runs every later forward pass on <paramref name="backend"/> (owned: disposed with this model).</summary>
    public Transformer UseBackend(IForwardBackend backend)
    {
        Backend = backend;
        return this;
    }

    /// <param name="maxLoraRank">Largest LoRA rank of an adapter in a batch (0: base model only).</param>
    public ForwardState CreateState(int maxTokens, int maxSequences, bool allPositionLogits = false, int maxLoraRank = 0) =>
        new(Config, maxTokens, maxSequences, MaxContext, allPositionLogits, Kernels.AttentionScratchRows, maxLoraRank);

    public IKvCache CreateCache(int maxTokens = 0)
    {
        int n = maxTokens > 0 ? Math.Min(maxTokens, MaxContext) : MaxContext;
        return Backend?.CreateCache(this, n) ?? KvCache.For(Config, n);
    }

    /// <summary>Runs the batch in <paramref name="s"/>: writes the new tokens' keys and values into their caches,
    /// advances the caches, and fills the logits (read them with <see cref="ForwardState.Logits"/>).</summary>
    public void Forward(ForwardState s, LogitsMode mode = LogitsMode.LastPerSequence)
    {
        if (Backend is { } backend)
        {
            backend.Forward(this, s, mode);
            return;
        }
        var c = Config;
        var w = Weights;
        var k = Kernels;
        int T = s.TokenCount, dim = c.HiddenSize, hd = c.HeadDim, kvDim = c.KvDim, qDim = c.QDim, hidden = c.IntermediateSize;
        float eps = (float)c.RmsNormEps;
        if (T == 0) return;
        if (mode == LogitsMode.AllPositions && !s.AllPositionLogits)
            throw new InvalidOperationException("this state was created without room for all-position logits");
        for (int i = 0; i < s.SequenceCount; i++) s.SeqCache[i].Reserve(s.SeqCache[i].Length + s.SeqCount[i]);
        s.SegmentCount = s.HasAdapters
            ? LoraSegments.Build(s.Segments, s.SeqStart.AsSpan(0, s.SequenceCount), s.SeqCount.AsSpan(0, s.SequenceCount), s.SeqAdapter.AsSpan(0, s.SequenceCount))
            : 0;

        // token embeddings
        for (int t = 0; t < T; t++)
        {
            int id = s.Tokens[t];
            if ((uint)id >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(s), $"token id {id} is outside the vocabulary ({c.VocabSize})");
            w.Embedding.ReadRow(id, s.X.AsSpan(t * dim, dim));
        }

        for (int l = 0; l < c.NumLayers; l++)
        {
            var L = w.Layers[l];

            // attention: xb = norm(x); q, k, v = projections; rope; cache; attend; x += o(att)
            k.RmsNorm(s.Xb, s.X, L.AttnNorm, eps, T);
            Project(s.Q, L.Q, s.K, L.K, s.V, L.V, s.Xb, T);
            Lora(s, s.Q, s.Xb, dim, qDim, l, LoraTarget.QProj);
            Lora(s, s.K, s.Xb, dim, kvDim, l, LoraTarget.KProj);
            Lora(s, s.V, s.Xb, dim, kvDim, l, LoraTarget.VProj);
            k.RopeAndCache(s.Q, s.K, s.V, T, c.NumHeads, c.NumKvHeads, hd, s.Positions, s.TokenCache, l, _rope);
            k.Attention(new AttentionBatch(s.Att, s.Q, s.TokenCache, s.Lengths, T, c.NumHeads, c.NumKvHeads, hd, l, s.Scores, s.ScoreRowLength, s.KeysT));
            Residual(s, s.Att, L.O, qDim, l, LoraTarget.OProj);

            // mlp: x += down(silu(gate(norm(x))) · up(norm(x)))
            k.RmsNorm(s.Xb, s.X, L.MlpNorm, eps, T);
            if (FuseEpilogues && L.Gate.Bias is null && L.Up.Bias is null && !AdaptsGateOrUp(s, l))
                k.MatMulSiluMul(s.Hb, L.Gate.Weight, L.Up.Weight, s.Xb, T);
            else
            {
                // an adapter's delta goes into gate and up before the activation
                Project(s.Hb, L.Gate, s.Hb2, L.Up, default, null, s.Xb, T);
                Lora(s, s.Hb, s.Xb, dim, hidden, l, LoraTarget.GateProj);
                Lora(s, s.Hb2, s.Xb, dim, hidden, l, LoraTarget.UpProj);
                k.SiluMul(s.Hb.AsSpan(0, T * hidden), s.Hb.AsSpan(0, T * hidden), s.Hb2.AsSpan(0, T * hidden));
            }
            Residual(s, s.Hb, L.Down, hidden, l, LoraTarget.DownProj);
        }

        // final norm and LM head, for the rows asked for
        if (mode == LogitsMode.HiddenStates)
        {
            k.RmsNorm(s.Xb, s.X, w.FinalNorm, eps, T);
        }
        else if (mode == LogitsMode.AllPositions)
        {
            k.RmsNorm(s.Xb, s.X, w.FinalNorm, eps, T);
            k.MatMul(s.LogitsBuffer, s.Xb, w.LmHead, T);
        }
        else
        {
            for (int i = 0; i < s.SequenceCount; i++)
            {
                int last = s.SeqStart[i] + s.SeqCount[i] - 1;
                k.RmsNorm(s.Last.AsSpan(i * dim, dim), s.X.AsSpan(last * dim, dim), w.FinalNorm, eps, 1);
            }
            k.MatMul(s.LogitsBuffer, s.Last, w.LmHead, s.SequenceCount);
        }
        for (int i = 0; i < s.SequenceCount; i++) s.SeqCache[i].Advance(s.SeqCount[i]);
    }

    /// <summary>y (n, out) = x (n, in) · Wᵀ + bias. Every projection goes through here or the fused overload
    /// below, so this is where per-segment LoRA deltas (y += scale · (x A) B) will be added.</summary>
    private void Project(Span<float> y, ReadOnlySpan<float> x, Linear p, int n)
    {
        Kernels.MatMul(y, x, p.Weight, n);
        AddBias(y, p, n);
    }

    /// <summary>Two or three projections of the same input (q/k/v, gate/up) in one parallel region.</summary>
    private void Project(Span<float> y1, Linear p1, Span<float> y2, Linear p2, Span<float> y3, Linear? p3, ReadOnlySpan<float> x, int n)
    {
        Kernels.MatMul(y1, p1.Weight, y2, p2.Weight, y3, p3?.Weight, x, n);
        AddBias(y1, p1, n);
        AddBias(y2, p2, n);
        if (p3 != null) AddBias(y3, p3, n);
    }

    /// <summary>Whether the fused epilogues run (the default). False: the projections write their outputs, and separate
    /// passes add the residual and apply SiLU·mul: the reference the tests and the benchmark compare the fused path with.</summary>
    internal bool FuseEpilogues { get; set; } = true;

    /// <summary>x (T, dim) += p(input) + bias + the LoRA deltas: o_proj and down_proj add their outputs to the residual
    /// stream inside the matmul, then the adapters' deltas go straight into x.</summary>
    private void Residual(ForwardState s, float[] input, Linear p, int inDim, int layer, LoraTarget target)
    {
        int T = s.TokenCount, dim = Config.HiddenSize;
        if (!FuseEpilogues)
        {
            Project(s.Xb, input, p, T);
            Lora(s, s.Xb, input, inDim, dim, layer, target);
            Ops.AddInPlace(s.X.AsSpan(0, T * dim), s.Xb.AsSpan(0, T * dim));
            return;
        }
        Kernels.MatMulAdd(s.X, input, p.Weight, T);
        AddBias(s.X, p, T);
        Lora(s, s.X, input, inDim, dim, layer, target);
    }

    /// <summary>Whether an adapter of the batch has a gate_proj or up_proj delta at this layer.</summary>
    private static bool AdaptsGateOrUp(ForwardState s, int layer)
    {
        foreach (var seg in s.Segments.AsSpan(0, s.SegmentCount))
            if (seg.Adapter is { } a && (a.Targets(layer, LoraTarget.GateProj) || a.Targets(layer, LoraTarget.UpProj))) return true;
        return false;
    }

    /// <summary>y (T, outDim) += scale · (x Aᵀ) Bᵀ per adapter segment of the batch, read from pool pages (never merged).</summary>
    private void Lora(ForwardState s, float[] y, float[] x, int inDim, int outDim, int layer, LoraTarget target)
    {
        if (s.SegmentCount == 0) return;
        int T = s.TokenCount;
        LoraKernel.Apply(y.AsSpan(0, T * outDim), x.AsSpan(0, T * inDim), inDim, outDim, s.Segments.AsSpan(0, s.SegmentCount),
            layer, target, s.LoraScratch, Kernels.Level, (Kernels as CpuKernels)?.Pool);
    }

    private static void AddBias(Span<float> y, Linear p, int n)
    {
        if (p.Bias is not { } bias) return;
        int o = p.Weight.Rows;
        for (int i = 0; i < n; i++) Ops.AddInPlace(y.Slice(i * o, o), bias);
    }

    /// <summary>Frees the backend, the weights and stops the kernels' workers.</summary>
    public void Dispose()
    {
        Backend?.Dispose();
        Weights.Dispose();
        (Kernels as IDisposable)?.Dispose();
    }
}
