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
    /// <summary>Where the forward pass runs (Inference:Backend as resolved on this node, with the device).</summary>
    public string Backend { get; init; } = "cpu";
    /// <summary>How the KV cache stores keys and values (Inference:KvCacheFormat): "f32" or "bf16".</summary>
    public string KvCacheFormat { get; init; } = "f32";
    /// <summary>How adapters are kept in pool pages (Inference:AdapterPageFormat): "f32" or "bf16".</summary>
    public string AdapterPageFormat { get; init; } = "f32";
    public bool HasTokenizer => Tokenizer is not null;
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
    /// <see cref="InvalidOperationException"/>. <paramref name="validated"/>: the folder's files were validated in full
    /// before and are known unchanged (checked against the hash recorded when they were), so only adapter_config.json is
    /// read now; the weights are read, and checked again, when a request first needs them.</summary>
    void RegisterAdapter(string adapterId, string folder, bool validated = false);

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
