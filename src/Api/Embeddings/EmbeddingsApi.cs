using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Loom.Api.Auth;
using Loom.Api.Completions;
using Loom.Api.Errors;
using Loom.Api.Limits;
using Loom.Api.Usage;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Inference.Engine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Embeddings;

/// <summary>POST /v1/embeddings: one vector per input, the mean over the input's positions of the final-normed hidden
/// state of the base model or one of the tenant's adapters, L2-normalized.</summary>
public static class EmbeddingsApi
{
    public const int MaxInputs = 2048;
    public const int MaxTotalTokens = 300_000;

    public static RouteGroupBuilder MapEmbeddings(this RouteGroupBuilder v1)
    {
        v1.MapPost("/embeddings", Create).WithName("CreateEmbeddings").Accepts<JsonElement>("application/json").RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> Create(HttpContext http, CompletionService service, IInferenceEngine engine, TenantRateLimiter limiter,
        UsageRecorder usage, TimeProvider clock, CancellationToken ct)
    {
        var key = http.Features.Get<AuthenticatedKey>()!;
        ResolvedModel model;
        List<int[]> inputs;
        bool base64;
        try
        {
            using var doc = await RequestBody.ReadJsonAsync(http.Request, ct);
            var r = RequestReader.Parse(doc);
            var name = r.RequiredString("model");
            var input = r.Get("input");
            var format = r.OptionalString("encoding_format") ?? "float";
            if (format is not ("float" or "base64")) throw new InvalidRequestException("'encoding_format' must be 'float' or 'base64'.", "encoding_format");
            base64 = format == "base64";
            var dimensions = r.OptionalInteger("dimensions", 1, int.MaxValue);
            r.OptionalString("user");
            r.RejectUnknown();
            model = await service.ResolveAsync(name, ct);
            var hidden = engine.Model.Config.HiddenSize;
            if (dimensions is { } d && d != hidden)
                throw new InvalidRequestException($"'dimensions' is not supported: this model's embeddings have {hidden} dimensions, and a shortened mean-pooled vector is not a trained embedding.", "dimensions");
            inputs = ReadInputs(input, model);
            var total = inputs.Sum(i => (long)i.Length);
            if (total > MaxTotalTokens) throw new InvalidRequestException($"The inputs hold {total} tokens, more than the {MaxTotalTokens} one request may.", "input");
            var decision = limiter.TryTokens(key, (int)total);
            if (!decision.Allowed)
                throw new CompletionRefusedException(429, $"Rate limit reached for tokens per minute. Please try again in {Math.Ceiling(decision.RetryAfter.TotalSeconds)}s.",
                    "tokens", null, "rate_limit_exceeded", decision.RetryAfter);
        }
        catch (InvalidRequestException e) { return ApiErrors.BadRequest(e.Message, e.Param, e.Code); }
        catch (CompletionRefusedException e) { return ChatCompletionsApi.Refused(http, e); }

        var started = Stopwatch.GetTimestamp();
        float[][] vectors;
        try { vectors = await engine.EmbedAsync(inputs, model.EngineAdapterId, ct); }
        catch (ArgumentException e) { return ApiErrors.BadRequest(e.Message, "input"); }
        catch (InvalidOperationException e) { return ApiErrors.Error(503, e.Message, "server_error", null, "engine_busy"); }
        var tokens = inputs.Sum(i => i.Length);
        await usage.RecordAsync(new UsageRecord
        {
            RequestId = Guid.NewGuid(), TenantId = key.Key.TenantId, ApiKeyId = PortalCaller.IsPortal(key) ? null : key.Key.Id, Model = model.Name, AdapterId = model.AdapterId,
            PromptTokens = tokens, CompletionTokens = 0, LatencyMs = (int)Math.Min(int.MaxValue, Stopwatch.GetElapsedTime(started).TotalMilliseconds), CreatedAt = clock.GetUtcNow(),
        });
        var data = vectors.Select((v, i) => new
        {
            @object = "embedding", index = i, embedding = base64 ? (object)Base64(v) : v,
        });
        return Results.Json(new { @object = "list", data, model = model.Name, usage = new { prompt_tokens = tokens, total_tokens = tokens } });
    }

    /// <summary>Little-endian float32 values in base64, as OpenAI encodes them.</summary>
    private static string Base64(float[] v)
    {
        var bytes = new byte[v.Length * 4];
        for (var i = 0; i < v.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), v[i]);
        return Convert.ToBase64String(bytes);
    }

    /// <summary>A string, an array of strings, an array of token ids, or an array of token-id arrays; each non-empty and
    /// within the model's context.</summary>
    private static List<int[]> ReadInputs(JsonElement input, ResolvedModel model)
    {
        if (input.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) throw new InvalidRequestException("Missing required parameter: 'input'.", "input");
        var list = new List<int[]>();
        if (input.ValueKind == JsonValueKind.String) list.Add(Encode(input.GetString()!, model, "input"));
        else if (input.ValueKind != JsonValueKind.Array || input.GetArrayLength() == 0)
            throw new InvalidRequestException("'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays, not empty.", "input");
        // One token-id prompt: bounded by the context (context_length_exceeded), not by the count of inputs.
        else if (input[0].ValueKind == JsonValueKind.Number) list.Add(Tokens(input, model, "input"));
        else if (input.GetArrayLength() > MaxInputs) throw new InvalidRequestException($"'input' takes at most {MaxInputs} items.", "input");
        else
        {
            var i = 0;
            foreach (var item in input.EnumerateArray())
            {
                var at = $"input[{i++}]";
                list.Add(item.ValueKind switch
                {
                    JsonValueKind.String => Encode(item.GetString()!, model, at),
                    JsonValueKind.Array => Tokens(item, model, at),
                    _ => throw new InvalidRequestException($"'{at}' must be a string or an array of token ids.", at),
                });
            }
        }
        return list;
    }

    private static int[] Encode(string text, ResolvedModel model, string at)
    {
        if (text.Length == 0) throw new InvalidRequestException($"'{at}' must not be empty.", at);
        if (text.Length > MaxTotalTokens * 8) throw new InvalidRequestException($"'{at}' is too long.", at);
        return Check(model.Tokenizer.Encode(text), model, at);
    }

    private static int[] Tokens(JsonElement array, ResolvedModel model, string at)
    {
        if (array.GetArrayLength() == 0) throw new InvalidRequestException($"'{at}' must not be empty.", at);
        if (array.GetArrayLength() > model.MaxContext) throw TooLong(array.GetArrayLength(), model, at);
        var ids = new int[array.GetArrayLength()];
        var j = 0;
        foreach (var t in array.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt32(out var id) || id < 0 || id >= model.Tokenizer.VocabSize)
                throw new InvalidRequestException($"'{at}[{j}]' must be a token id between 0 and {model.Tokenizer.VocabSize - 1}.", at);
            ids[j++] = id;
        }
        return Check(ids, model, at);
    }

    private static int[] Check(int[] ids, ResolvedModel model, string at)
    {
        if (ids.Length == 0) throw new InvalidRequestException($"'{at}' encodes to no tokens.", at);
        if (ids.Length > model.MaxContext) throw TooLong(ids.Length, model, at);
        return ids;
    }

    private static InvalidRequestException TooLong(int tokens, ResolvedModel model, string at) => new(string.Create(CultureInfo.InvariantCulture,
        $"This model's maximum context length is {model.MaxContext} tokens, however '{at}' has {tokens} tokens."), at, "context_length_exceeded");
}
