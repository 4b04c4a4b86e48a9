namespace Loom.Inference.Sampling;

/// <summary>How tokens are chosen and when generation ends.
/// Filters apply in this order: temperature → top-k → top-p → min-p, each on what the previous one kept.</summary>
public sealed record SamplingParams
{
    /// <summary>0 means greedy (argmax).</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Keep the k most likely tokens; 0 disables.</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 disables.</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens less likely than min_p × the most likely one; 0 disables.</summary>
    public float MinP { get; init; }
    /// <summary>Same seed, same prompt, same parameters → same tokens. Null draws a random seed.</summary>
    public ulong? Seed { get; init; }
    public int MaxTokens { get; init; } = 256;
    /// <summary>Extra token ids that end generation (the model's EOS ids always do unless IgnoreEos).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Strings that end generation; the text stops before the match.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public bool IgnoreEos { get; init; }
    /// <summary>Number of top alternatives to report with each token's logprob; null reports no logprobs.</summary>
    public int? Logprobs { get; init; }

    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException("temperature must be >= 0");
        if (TopK < 0) throw new ArgumentException("top_k must be >= 0");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException("top_p must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException("min_p must be in [0, 1]");
        if (MaxTokens < 1) throw new ArgumentException("max_tokens must be >= 1");
        if (Logprobs is < 0 or > 20) throw new ArgumentException("logprobs must be between 0 and 20");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty");
    }
}

/// <summary>One alternative token with its log probability.</summary>
public sealed record TokenAlternative(int TokenId, float Logprob, string? Text = null);

/// <summary>The chosen token's log probability under the model (log-softmax of the raw logits) and the top alternatives.</summary>
public sealed record TokenLogprobs(int TokenId, float Logprob, IReadOnlyList<TokenAlternative> Top);
