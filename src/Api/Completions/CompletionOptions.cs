using System.Globalization;
using System.Text.Json;
using Loom.Inference.Constrained;
using Loom.Inference.Sampling;

namespace Loom.Api.Completions;

/// <summary>The sampling and streaming fields shared by /v1/chat/completions and /v1/completions, validated.</summary>
internal sealed record CompletionOptions
{
    public const int MaxChoices = 8;

    public required string Model { get; init; }
    public int? MaxTokens { get; init; }
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public int TopK { get; init; }
    public float MinP { get; init; }
    public int N { get; init; } = 1;
    public IReadOnlyList<string> Stop { get; init; } = [];
    public long? Seed { get; init; }
    /// <summary>Top alternatives per token when logprobs were asked for; null when not.</summary>
    public int? TopLogprobs { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    public string? User { get; init; }
    /// <summary>Extension (as vLLM's OpenAI server has it): keep generating past end-of-sequence tokens, up to max_tokens.</summary>
    public bool IgnoreEos { get; init; }
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    /// <summary>Extension (as vLLM's OpenAI server has it); 1 disables.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    public IReadOnlyDictionary<int, float> LogitBias { get; init; } = new Dictionary<int, float>();
    /// <summary>From response_format: the JSON the output must be; null for free text.</summary>
    public JsonGrammar? Grammar { get; init; }
    /// <summary>With tool calls under tool_choice "auto": the text that starts the constrained part.</summary>
    public string? GrammarTrigger { get; init; }

    /// <summary>Reads the shared fields. <paramref name="chat"/> selects chat's logprobs (bool + top_logprobs) over legacy's (int).</summary>
    public static CompletionOptions Read(RequestReader r, bool chat)
    {
        var model = r.RequiredString("model");
        if (model.Length == 0) throw new InvalidRequestException("'model' must not be empty.", "model");

        var maxTokens = r.OptionalInteger("max_tokens", 1, int.MaxValue);
        if (chat)
        {
            var maxCompletion = r.OptionalInteger("max_completion_tokens", 1, int.MaxValue);
            if (maxCompletion is not null && maxTokens is not null && maxCompletion != maxTokens)
                throw new InvalidRequestException("Give 'max_tokens' or 'max_completion_tokens', not two different values.", "max_completion_tokens");
            maxTokens ??= maxCompletion;
        }

        int? topLogprobs = null;
        if (chat)
        {
            var logprobs = r.OptionalBool("logprobs") ?? false;
            var top = r.OptionalInteger("top_logprobs", 0, 20);
            if (top is not null && !logprobs) throw new InvalidRequestException("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
            if (logprobs) topLogprobs = (int)(top ?? 0);
        }
        else if (r.OptionalInteger("logprobs", 0, 5) is { } legacy)
        {
            topLogprobs = (int)legacy;
        }

        var stream = r.OptionalBool("stream") ?? false;
        var includeUsage = false;
        var streamOptions = r.Get("stream_options");
        if (streamOptions.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
        {
            if (!stream) throw new InvalidRequestException("'stream_options' is only allowed when 'stream' is true.", "stream_options");
            if (streamOptions.ValueKind != JsonValueKind.Object) throw new InvalidRequestException("'stream_options' must be an object.", "stream_options");
            foreach (var p in streamOptions.EnumerateObject())
            {
                if (p.Name != "include_usage") throw new InvalidRequestException($"Unrecognized stream option: {p.Name}", "stream_options");
                if (p.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    throw new InvalidRequestException("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage");
                includeUsage = p.Value.GetBoolean();
            }
        }

        var options = new CompletionOptions
        {
            Model = model,
            MaxTokens = (int?)maxTokens,
            Temperature = (float)(r.OptionalNumber("temperature", 0, 2) ?? 1),
            TopP = (float)(r.OptionalNumber("top_p", 0, 1) ?? 1),
            TopK = (int)(r.OptionalInteger("top_k", 0, 1_000_000) ?? 0),
            MinP = (float)(r.OptionalNumber("min_p", 0, 1) ?? 0),
            N = (int)(r.OptionalInteger("n", 1, MaxChoices) ?? 1),
            Stop = ReadStop(r.Get("stop")),
            Seed = r.OptionalInteger("seed", long.MinValue, long.MaxValue),
            TopLogprobs = topLogprobs,
            Stream = stream,
            IncludeUsage = includeUsage,
            User = r.OptionalString("user"),
            IgnoreEos = r.OptionalBool("ignore_eos") ?? false,
            PresencePenalty = (float)(r.OptionalNumber("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(r.OptionalNumber("frequency_penalty", -2, 2) ?? 0),
            RepetitionPenalty = (float)(r.OptionalNumber("repetition_penalty", 0, 10) ?? 1),
            LogitBias = ReadLogitBias(r.Get("logit_bias")),
            Grammar = ResponseFormat.Read(r.Get("response_format"), "response_format"),
        };
        if (options.RepetitionPenalty == 0) throw new InvalidRequestException("'repetition_penalty' must be greater than 0.", "repetition_penalty");
        if (options.TopP == 0) throw new InvalidRequestException("'top_p' must be greater than 0.", "top_p");
        return options;
    }

    /// <summary>OpenAI's logit_bias: an object from token ids (as strings) to a bias between -100 and 100.</summary>
    private static IReadOnlyDictionary<int, float> ReadLogitBias(JsonElement bias)
    {
        var map = new Dictionary<int, float>();
        if (bias.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return map;
        if (bias.ValueKind != JsonValueKind.Object) throw new InvalidRequestException("'logit_bias' must be an object mapping token ids to numbers.", "logit_bias");
        foreach (var p in bias.EnumerateObject())
        {
            if (map.Count == SamplingParams.MaxLogitBiasEntries)
                throw new InvalidRequestException($"'logit_bias' takes at most {SamplingParams.MaxLogitBiasEntries} tokens.", "logit_bias");
            if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new InvalidRequestException($"'logit_bias' keys must be token ids; got '{p.Name}'.", "logit_bias");
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out var v) || v < -100 || v > 100)
                throw new InvalidRequestException($"'logit_bias' values must be numbers between -100 and 100 (token {id}).", "logit_bias");
            map[id] = (float)v;
        }
        return map;
    }

    private static IReadOnlyList<string> ReadStop(JsonElement stop)
    {
        switch (stop.ValueKind)
        {
            case JsonValueKind.Undefined or JsonValueKind.Null:
                return [];
            case JsonValueKind.String:
                return stop.GetString()!.Length == 0 ? throw new InvalidRequestException("'stop' strings must not be empty.", "stop") : [stop.GetString()!];
            case JsonValueKind.Array:
                var list = new List<string>();
                foreach (var s in stop.EnumerateArray())
                {
                    if (s.ValueKind != JsonValueKind.String || s.GetString()!.Length == 0)
                        throw new InvalidRequestException("'stop' must be a non-empty string or an array of non-empty strings.", "stop");
                    list.Add(s.GetString()!);
                }
                return list.Count <= 4 ? list : throw new InvalidRequestException("'stop' takes at most 4 sequences.", "stop");
            default:
                throw new InvalidRequestException("'stop' must be a string or an array of strings.", "stop");
        }
    }

    /// <summary>The engine's sampling parameters for choice <paramref name="index"/> (seeded choices get distinct seeds).</summary>
    public SamplingParams Sampling(int maxTokens, int index) => new()
    {
        Temperature = Temperature,
        TopP = TopP,
        TopK = TopK,
        MinP = MinP,
        Seed = Seed is { } s ? unchecked((ulong)s + (ulong)index) : null,
        MaxTokens = maxTokens,
        StopStrings = Stop,
        Logprobs = TopLogprobs,
        IgnoreEos = IgnoreEos,
        PresencePenalty = PresencePenalty,
        FrequencyPenalty = FrequencyPenalty,
        RepetitionPenalty = RepetitionPenalty,
        LogitBias = LogitBias,
        Grammar = Grammar,
        GrammarTrigger = GrammarTrigger,
    };
}
