using Loom.Inference.Model;
using Loom.Inference.Sampling;
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

/// <summary>The engine's public surface: stream a completion.</summary>
public interface IInferenceEngine
{
    ModelInfo Model { get; }
    IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);
}
