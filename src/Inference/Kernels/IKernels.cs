using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>Per-token inputs of a batched attention call.</summary>
/// <param name="Output">(tokens, heads*headDim) attention output.</param>
/// <param name="Q">(tokens, heads*headDim) queries, RoPE applied.</param>
/// <param name="Caches">(tokens) the cache each token's sequence reads.</param>
/// <param name="Lengths">(tokens) positions visible to each token (its position + 1: causal).</param>
/// <param name="Scratch">(Workers, maxContext) score rows, one per parallel work chunk.</param>
/// <param name="KeysT">(maxContext rounded up to 16, kvHeads*headDim) room for one sequence's transposed keys
/// (prefill); empty to always use the per-key path.</param>
public readonly ref struct AttentionBatch(Span<float> output, ReadOnlySpan<float> q, IKvCache[] caches, ReadOnlySpan<int> lengths,
    int tokens, int heads, int kvHeads, int headDim, int layer, Span<float> scratch, int scratchRowLength, Span<float> keysT = default)
{
    public readonly Span<float> KeysT = keysT;
    public readonly Span<float> Output = output;
    public readonly ReadOnlySpan<float> Q = q;
    public readonly IKvCache[] Caches = caches;
    public readonly ReadOnlySpan<int> Lengths = lengths;
    public readonly int Tokens = tokens, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, Layer = layer;
    public readonly Span<float> Scratch = scratch;
    public readonly int ScratchRowLength = scratchRowLength;
}

/// <summary>The compute backend the transformer runs on. Row-major buffers; n = number of rows (tokens).</summary>
public interface IKernels
{
    SimdLevel Level { get; }
    /// <summary>Number of scratch rows the attention call wants (one per parallel chunk).</summary>
    int AttentionScratchRows { get; }
    /// <summary>y (n, W.Rows) = x (n, W.Cols) · Wᵀ.</summary>
    void MatMul(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n);
    /// <summary>y1 = x · W1ᵀ, y2 = x · W2ᵀ (, y3 = x · W3ᵀ) in one parallel region; pass an empty y3 and null w3 for two.</summary>
    void MatMul(Span<float> y1, WeightMatrix w1, Span<float> y2, WeightMatrix w2, Span<float> y3, WeightMatrix? w3, ReadOnlySpan<float> x, int n);
    /// <summary>y (n, W.Rows) += x (n, W.Cols) · Wᵀ: a projection that adds its output to the residual stream.</summary>
    void MatMulAdd(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n);
    /// <summary>h (n, gate.Rows) = silu(x · Gateᵀ) · (x · Upᵀ): the MLP's gate and up projections with the activation in
    /// their output, so the intermediate is written once.</summary>
    void MatMulSiluMul(Span<float> h, WeightMatrix gate, WeightMatrix up, ReadOnlySpan<float> x, int n);
    /// <summary>y (n, dim) = RMSNorm of each row of x (n, dim).</summary>
    void RmsNorm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int n);
    /// <summary>Rotates the heads of one token's vector in place.</summary>
    void Rope(Span<float> vec, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin);
    /// <summary>For each of <paramref name="tokens"/> tokens: RoPE on its query (heads) and key (kvHeads) heads at its
    /// position, then its key and value rows written to its cache at <paramref name="layer"/> (bf16 caches: rounded).</summary>
    void RopeAndCache(Span<float> q, Span<float> k, ReadOnlySpan<float> v, int tokens, int heads, int kvHeads, int headDim,
        ReadOnlySpan<int> positions, IKvCache[] caches, int layer, RopeTable rope);
    /// <summary>y = silu(gate) · up, element-wise.</summary>
    void SiluMul(Span<float> y, ReadOnlySpan<float> gate, ReadOnlySpan<float> up);
    /// <summary>Causal GQA attention for every (token, head) of the batch.</summary>
    void Attention(in AttentionBatch batch);
    int Argmax(ReadOnlySpan<float> x);
}
