using Loom.Inference.Kernels;
using Loom.Inference.Memory;

namespace Loom.Inference.Model;

/// <summary>Which logits a forward pass produces.</summary>
public enum LogitsMode
{
    /// <summary>(sequences, vocab): the last position of each sequence (generation).</summary>
    LastPerSequence,
    /// <summary>(tokens, vocab): every position (training, scoring).</summary>
    AllPositions,
    /// <summary>No logits: the final-normed hidden state of every token (embeddings); read with <see cref="ForwardState.Hidden"/>.</summary>
    HiddenStates,
}

/// <summary>The run state of a batched forward pass: the batch being built (sequences, their new tokens and caches)
/// and every activation buffer, allocated once for a capacity of tokens and sequences.</summary>
public sealed class ForwardState
{
    public int MaxTokens { get; }
    public int MaxSequences { get; }
    public int MaxContext { get; }
    /// <summary>Length of one row of attention scores: MaxContext rounded up to whole 16-key blocks.</summary>
    internal int ScoreRowLength => (MaxContext + 15) / 16 * 16;
    public bool AllPositionLogits { get; }
    /// <summary>Largest LoRA rank a sequence's adapter may have (the LoRA scratch is sized for it).</summary>
    public int MaxLoraRank { get; }

    // the batch
    internal readonly int[] Tokens;          // (MaxTokens) token ids, sequences concatenated
    internal readonly int[] Positions;       // (MaxTokens) position of each token in its sequence
    internal readonly int[] Lengths;         // (MaxTokens) positions + 1 (visible keys)
    internal readonly IKvCache[] TokenCache; // (MaxTokens) cache of each token's sequence
    internal readonly IKvCache[] SeqCache;   // (MaxSequences)
    internal readonly int[] SeqStart;        // (MaxSequences) first token of each sequence
    internal readonly int[] SeqCount;        // (MaxSequences) new tokens of each sequence
    internal readonly AdapterResidency?[] SeqAdapter; // (MaxSequences) LoRA adapter of each sequence (null: base model)
    internal readonly LoraSegment[] Segments;         // (MaxSequences) runs of consecutive sequences sharing an adapter
    internal int SegmentCount;                        // set by the forward pass; 0 when no sequence has an adapter
    internal readonly float[] LoraScratch;            // (MaxTokens, MaxLoraRank) shrunk activations x·Aᵀ
    private int _adapterSequences;
    public int TokenCount { get; private set; }
    public int SequenceCount { get; private set; }

    // activations
    internal readonly float[] X;        // (MaxTokens, dim) residual stream
    internal readonly float[] Xb;       // (MaxTokens, dim) normed input (and, without fused epilogues, o/down output)
    internal readonly float[] Q;        // (MaxTokens, heads*headDim)
    internal readonly float[] K;        // (MaxTokens, kvHeads*headDim)
    internal readonly float[] V;        // (MaxTokens, kvHeads*headDim)
    internal readonly float[] Att;      // (MaxTokens, heads*headDim) attention output
    internal readonly float[] Hb;       // (MaxTokens, hidden) silu(gate)·up (written once when gate/up are fused; else gate first)
    internal readonly float[] Hb2;      // (MaxTokens, hidden) up, when gate/up take separate passes (adapters on them, biases)
    internal readonly float[] Last;     // (MaxSequences, dim) final hidden state of each sequence's last token
    internal readonly float[] Scores;   // (scratch rows × query heads per KV head, ScoreRowLength) attention scores
    internal readonly float[] KeysT;    // (kvHeads, MaxContext/16 blocks, headDim, 16) one prefill sequence's keys, transposed
    internal readonly float[] LogitsBuffer; // (MaxSequences or MaxTokens, vocab)
    private readonly int _vocab;

    internal ForwardState(ModelConfig c, int maxTokens, int maxSequences, int maxContext, bool allPositionLogits, int scratchRows, int maxLoraRank = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxLoraRank);
        MaxLoraRank = maxLoraRank;
        SeqAdapter = new AdapterResidency?[maxSequences];
        Segments = new LoraSegment[maxSequences];
        LoraScratch = new float[(long)maxTokens * maxLoraRank];
        MaxTokens = maxTokens;
        MaxSequences = maxSequences;
        MaxContext = maxContext;
        AllPositionLogits = allPositionLogits;
        _vocab = c.VocabSize;
        Tokens = new int[maxTokens];
        Positions = new int[maxTokens];
        Lengths = new int[maxTokens];
        TokenCache = new IKvCache[maxTokens];
        SeqCache = new IKvCache[maxSequences];
        SeqStart = new int[maxSequences];
        SeqCount = new int[maxSequences];
        X = new float[maxTokens * c.HiddenSize];
        Xb = new float[maxTokens * c.HiddenSize];
        Q = new float[maxTokens * c.QDim];
        K = new float[maxTokens * c.KvDim];
        V = new float[maxTokens * c.KvDim];
        Att = new float[maxTokens * c.QDim];
        Hb = new float[maxTokens * c.IntermediateSize];
        Hb2 = new float[maxTokens * c.IntermediateSize];
        Last = new float[maxSequences * c.HiddenSize];
        // a row per head of a KV group; twice that for batches of several tokens, where the 256-bit attention gives each
        // chunk the group's heads of CpuKernels.QueryBlockTokens tokens (half as many chunks as scratch rows)
        Scores = new float[scratchRows * Math.Max(1, c.NumHeads / c.NumKvHeads) * (maxTokens > 1 ? 2 : 1) * ScoreRowLength];
        KeysT = maxTokens >= CpuKernels.TransposedAttentionMinTokens ? new float[(maxContext + 15) / 16 * 16 * c.KvDim] : [];
        LogitsBuffer = new float[(long)(allPositionLogits ? maxTokens : maxSequences) * c.VocabSize];
    }

    /// <summary>Empties the batch.</summary>
    public void Clear()
    {
        TokenCount = 0;
        SequenceCount = 0;
        _adapterSequences = 0;
        SegmentCount = 0;
    }

    /// <summary>Whether any sequence of the batch has a LoRA adapter.</summary>
    internal bool HasAdapters => _adapterSequences > 0;

    /// <summary>Adds a sequence with its new tokens (a prompt chunk for prefill, one token for decode).
    /// Their positions continue from the cache's current length. <paramref name="adapter"/>: the sequence's LoRA adapter in
    /// pool pages (null: base model); add sequences of one adapter next to each other to get one segment per adapter.</summary>
    public void Add(IKvCache cache, ReadOnlySpan<int> tokens, AdapterResidency? adapter = null)
    {
        if (adapter is not null && adapter.Rank > MaxLoraRank)
            throw new ArgumentException($"adapter '{adapter.AdapterId}' has rank {adapter.Rank}; this state holds LoRA scratch for rank {MaxLoraRank}");
        if (tokens.Length == 0) throw new ArgumentException("a sequence needs at least one new token");
        if (SequenceCount == MaxSequences) throw new InvalidOperationException($"batch is full ({MaxSequences} sequences)");
        if (TokenCount + tokens.Length > MaxTokens) throw new InvalidOperationException($"batch is full ({MaxTokens} tokens)");
        if (cache.Length + tokens.Length > MaxContext)
            throw new InvalidOperationException($"sequence would reach {cache.Length + tokens.Length} positions, beyond the context limit of {MaxContext}");
        for (int i = 0; i < SequenceCount; i++)
            if (ReferenceEquals(SeqCache[i], cache)) throw new ArgumentException("a cache may appear only once per batch");
        int s = SequenceCount++;
        SeqCache[s] = cache;
        SeqStart[s] = TokenCount;
        SeqCount[s] = tokens.Length;
        SeqAdapter[s] = adapter;
        if (adapter is not null) _adapterSequences++;
        for (int j = 0; j < tokens.Length; j++)
        {
            int t = TokenCount++;
            Tokens[t] = tokens[j];
            Positions[t] = cache.Length + j;
            Lengths[t] = cache.Length + j + 1;
            TokenCache[t] = cache;
        }
    }

    /// <summary>Logits row i: the i-th sequence's last token (LastPerSequence) or the i-th token (AllPositions).</summary>
    public Span<float> Logits(int i) => LogitsBuffer.AsSpan(i * _vocab, _vocab);

    /// <summary>Token t's final-normed hidden state after a <see cref="LogitsMode.HiddenStates"/> pass.</summary>
    public ReadOnlySpan<float> Hidden(int t) => Xb.AsSpan(t * (Xb.Length / MaxTokens), Xb.Length / MaxTokens);
}
