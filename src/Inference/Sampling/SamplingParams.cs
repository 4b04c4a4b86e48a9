using Loom.Inference.Constrained;

namespace Loom.Inference.Sampling;

/// <summary>How tokens are chosen and when generation ends. The logits are first adjusted (logit bias, then the
/// repetition, presence and frequency penalties, then the grammar's mask); filters then apply in this order:
/// temperature → top-k → top-p → min-p, each on what the previous one kept.</summary>
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
    /// <summary>Added to the logits of these token ids (OpenAI's logit_bias: -100 bans a token, 100 forces it).</summary>
    public IReadOnlyDictionary<int, float> LogitBias { get; init; } = new Dictionary<int, float>();
    /// <summary>OpenAI's: subtracted once from the logit of every token already generated.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>OpenAI's: subtracted from a token's logit once per time it was generated.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>As in Hugging Face and vLLM: the logit of every token of the prompt or the output is divided by it when
    /// positive, multiplied by it when negative; 1 disables.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>Constrained output: every generated token keeps the text a prefix of a JSON value this grammar allows,
    /// and generation ends when the value is complete.</summary>
    public JsonGrammar? Grammar { get; init; }
    /// <summary>With a grammar: the text is free until the output ends with this, then a value of the grammar follows
    /// (and the text is free again once it is complete). Null: the whole output is the value.</summary>
    public string? GrammarTrigger { get; init; }

    public const int MaxLogitBiasEntries = 300;

    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException("temperature must be >= 0");
        if (TopK < 0) throw new ArgumentException("top_k must be >= 0");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException("top_p must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException("min_p must be in [0, 1]");
        if (MaxTokens < 1) throw new ArgumentException("max_tokens must be >= 1");
        if (Logprobs is < 0 or > 20) throw new ArgumentException("logprobs must be between 0 and 20");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty");
        if (!(PresencePenalty is >= -2 and <= 2)) throw new ArgumentException("presence_penalty must be between -2 and 2");
        if (!(FrequencyPenalty is >= -2 and <= 2)) throw new ArgumentException("frequency_penalty must be between -2 and 2");
        if (!(RepetitionPenalty is > 0 and <= 10)) throw new ArgumentException("repetition_penalty must be in (0, 10]");
        if (LogitBias.Count > MaxLogitBiasEntries) throw new ArgumentException($"logit_bias takes at most {MaxLogitBiasEntries} tokens");
        if (LogitBias.Any(b => b.Key < 0 || !(b.Value is >= -100 and <= 100))) throw new ArgumentException("logit_bias maps token ids to values between -100 and 100");
    }
}

/// <summary>One alternative token with its log probability.</summary>
public sealed record TokenAlternative(int TokenId, float Logprob, string? Text = null);

/// <summary>The chosen token's log probability under the model (log-softmax of the raw logits) and the top alternatives.</summary>
public sealed record TokenLogprobs(int TokenId, float Logprob, IReadOnlyList<TokenAlternative> Top);
