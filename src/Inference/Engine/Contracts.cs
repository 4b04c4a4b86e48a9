using Loom.Inference.Model;
using Loom.Inference.Sampling;
using Loom.Inference.Scheduling;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

/// <summary>A completion request: a prompt as text (needs the model's tokenizer) or as token ids.</summary>
public sealed record GenerationRequest
{
    public string? Prompt { get; init; }
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
    /// <summary>Add BOS the way the tokenizer's post-processor does (text prompts only).</summary>
    public bool AddSpecialTokens { get; init; } = true;
    public SamplingParams Sampling { get; init; } = new();
    /// <summary>A registered LoRA adapter to apply (see <see cref="IInferenceEngine.RegisterAdapter"/>); null: the base model.</summary>
    public string? AdapterId { get; init; }
    /// <summary>Who asked (for fair scheduling; unused by FCFS).</summary>
    public string? TenantId { get; init; }
    /// <summary>Scheduling priority within the tenant: higher first (batch 0, interactive 1; unused by FCFS).</summary>
    public int Priority { get; init; }
    /// <summary>The tenant's weight in the fair division of service (VTC divides its counted tokens by it); positive,
    /// default 1. The latest request's value applies to the tenant.</summary>
    public double TenantShare { get; init; } = 1;
}

public enum FinishReason { Stop, Length }

public sealed record TokenUsage(int PromptTokens, int CompletionTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>One streamed step. Token events carry TokenId and the text that became final with it (possibly
/// empty: incomplete UTF-8, or text held back while it may be a stop string). The last event has no TokenId,
/// carries any remaining text, the finish reason and the usage.</summary>
public sealed record GenerationEvent
{
    public int? TokenId { get; init; }
    public string Text { get; init; } = "";
    public TokenLogprobs? Logprobs { get; init; }
    public FinishReason? FinishReason { get; init; }
    public TokenUsage? Usage { get; init; }
    public bool IsFinal => FinishReason is not null;
}

/// <summary>What is being served.</summary>
public sealed record ModelInfo(string Name, ModelConfig Config, int MaxContext, ITokenizer? Tokenizer)
{
    public bool HasTokenizer => Tokenizer is not null;
}

/// <summary>A snapshot of the engine: the unified pool, the adapter tiers, the queue and the last iteration.</summary>
/// <param name="PoolPages">Pages in the unified pool; <paramref name="PoolFreePages"/> + <paramref name="PoolKvPages"/>
/// + <paramref name="PoolAdapterPages"/> = PoolPages.</param>
/// <param name="AdapterLoads">Adapters copied into pool pages.</param>
/// <param name="AdapterEvictions">Adapters whose pool pages were freed to make room.</param>
/// <param name="AdapterDiskLoads">Adapter folders read from disk (registration, host-cache misses, prefetch).</param>
/// <param name="LastBatchSequences">Sequences in the last forward pass; <paramref name="LastBatchTokens"/> its tokens.</param>
public sealed record EngineMetrics(
    int PoolPages, int PoolFreePages, int PoolKvPages, int PoolAdapterPages, int PageBytes,
    int AdaptersRegistered, int AdaptersInPool, int AdaptersInHostCache, long HostCacheBytes, long HostCacheCapacityBytes,
    int Running, int Waiting, int LastBatchSequences, int LastBatchTokens, long Iterations, long TokensComputed, long TokensGenerated,
    long AdapterLoads, long AdapterEvictions, long AdapterDiskLoads, long Preemptions,
    long RequestsFinished, long RequestsCancelled, long RequestsFailed)
{
    /// <summary>The scheduling policy (Fcfs or Vtc).</summary>
    public string SchedulingPolicy { get; init; } = "";
    /// <summary>Preemptions (of <see cref="Preemptions"/>) that made room for a less-served tenant; the rest were for memory.</summary>
    public long FairnessPreemptions { get; init; }
    /// <summary>Preemptions (of <see cref="Preemptions"/>) whose KV cache was copied to host memory; the rest are recomputed.</summary>
    public long SwapPreemptions { get; init; }
    /// <summary>KV bytes copied to host memory by preemptions, and back on resumption.</summary>
    public long SwapBytesOut { get; init; }
    public long SwapBytesIn { get; init; }
    /// <summary>Time spent copying KV caches to and from host memory (on the copy thread when <see cref="AsyncSwap"/>).</summary>
    public TimeSpan SwapCopyTime { get; init; }
    /// <summary>Whether swap copies run on their own thread, overlapped with the forward pass.</summary>
    public bool AsyncSwap { get; init; }
    /// <summary>Time the engine loop stood waiting for swap copies (async swap): what the overlap did not hide.</summary>
    public TimeSpan SwapWaitTime { get; init; }
    /// <summary>Tokens dropped by preemption by recompute (computed again later).</summary>
    public long RecomputeTokens { get; init; }
    /// <summary>Requests that started from a cached prefix of the same tenant's earlier sequence (multi-turn reuse),
    /// the prompt tokens they did not compute, and the bytes the prefix cache holds.</summary>
    public long PrefixCacheHits { get; init; }
    public long PrefixTokensReused { get; init; }
    public long PrefixCacheBytes { get; init; }
    /// <summary>Pages of the pool counted against the activations of training runs (then PoolFreePages + PoolKvPages +
    /// PoolAdapterPages + PoolTrainingPages = PoolPages); training runs not yet ended; tokens they trained.</summary>
    public int PoolTrainingPages { get; init; }
    public int TrainingRuns { get; init; }
    public long TrainedTokens { get; init; }
    /// <summary>Per tenant (VTC only): counter, share, waiting and running sequences, tokens served, preemptions.</summary>
    public IReadOnlyList<TenantServiceSnapshot> Tenants { get; init; } = [];
}

/// <summary>The engine's public surface: stream a completion, manage LoRA adapters, read metrics.</summary>
public interface IInferenceEngine
{
    ModelInfo Model { get; }

    /// <summary>Streams a completion. Throws <see cref="ArgumentException"/> before any token for a bad request,
    /// including one naming an adapter that is not registered.</summary>
    IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>Reads and validates a PEFT adapter folder against the base model and registers it under
    /// <paramref name="adapterId"/>. Throws <see cref="Formats.AdapterFormatException"/> on bad input (nothing is
    /// registered then). Registering an id again with the same folder does nothing; with another folder it throws
    /// <see cref="InvalidOperationException"/>.</summary>
    void RegisterAdapter(string adapterId, string folder);

    bool IsAdapterRegistered(string adapterId);

    /// <summary>Forgets an adapter (no-op if unknown). Throws <see cref="InvalidOperationException"/> while a running
    /// request uses it; queued requests naming it fail.</summary>
    void UnregisterAdapter(string adapterId);

    EngineMetrics GetMetrics();

    /// <summary>One L2-normalized embedding per input: the mean over its positions of the final-normed hidden state
    /// of the base model, or of the model with the registered adapter <paramref name="adapterId"/>. Throws
    /// <see cref="ArgumentException"/> for an empty input, one past the context or an unknown adapter.</summary>
    Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, string? adapterId, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("this engine does not compute embeddings");
}
