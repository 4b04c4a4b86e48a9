using Loom.Api.Auth;
using Loom.Data.Entities;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Loom.Api.Errors;
using Loom.Data.Keys;
using Loom.Inference.Engine;
using Loom.Inference.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Completions;

/// <summary>POST /v1/chat/completions: OpenAI's chat completions, plain or streamed (SSE).</summary>
public static class ChatCompletionsApi
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant"];

    public static RouteGroupBuilder MapChatCompletions(this RouteGroupBuilder v1)
    {
        v1.MapPost("/chat/completions", Create).WithName("CreateChatCompletion")
            .Accepts<JsonElement>("application/json").Produces<ChatCompletion>().RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> Create(HttpContext http, CompletionService service, CancellationToken ct)
    {
        var key = http.Features.Get<AuthenticatedKey>()!;
        PreparedCompletion prepared;
        try
        {
            using var doc = await RequestBody.ReadJsonAsync(http.Request, ct);
            var reader = RequestReader.Parse(doc);
            var messages = ReadMessages(reader.Get("messages"));
            var options = CompletionOptions.Read(reader, chat: true);
            reader.RejectUnknown();
            var model = await service.ResolveAsync(options.Model, ct);
            int[] prompt;
            try { prompt = model.Tokenizer.EncodeChat(messages); }
            catch (InvalidOperationException e) { throw new InvalidRequestException(e.Message, "model"); }
            prepared = service.Prepare(model, prompt, options, key, CompletionService.PriorityOf(http.Request, key), "messages");
        }
        catch (InvalidRequestException e) { return ApiErrors.BadRequest(e.Message, e.Param, e.Code); }
        catch (CompletionRefusedException e) { return Refused(http, e); }

        var id = Sse.NewId("chatcmpl-");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (prepared.Options.Stream)
        {
            await StreamAsync(http, service, prepared, key, id, created, ct);
            return Results.Empty;
        }

        var n = prepared.Options.N;
        var text = Enumerable.Range(0, n).Select(_ => new StringBuilder()).ToArray();
        var logprobs = Enumerable.Range(0, n).Select(_ => new List<TokenLogprobObject>()).ToArray();
        var finish = new string[n];
        var completionTokens = 0;
        await foreach (var (i, e) in service.RunAsync(prepared, key, ct))
        {
            text[i].Append(e.Text);
            if (e.Logprobs is { } lp) logprobs[i].Add(LogprobMapping.Chat(lp, prepared.Model.Tokenizer));
            if (e.IsFinal) { finish[i] = Reason(e.FinishReason!.Value); completionTokens += e.Usage!.CompletionTokens; }
        }
        var promptTokens = prepared.PromptIds.Length * n;
        var choices = Enumerable.Range(0, n).Select(i => new ChatChoice(i, new ChatMessageObject("assistant", text[i].ToString()),
            prepared.Options.TopLogprobs is null ? null : new ChoiceLogprobs(logprobs[i]), finish[i])).ToList();
        return Results.Json(new ChatCompletion(id, "chat.completion", created, prepared.Options.Model, choices,
            new UsageObject(promptTokens, completionTokens, promptTokens + completionTokens)));
    }

    private static async Task StreamAsync(HttpContext http, CompletionService service, PreparedCompletion p, AuthenticatedKey key, string id, long created, CancellationToken ct)
    {
        var response = http.Response;
        Sse.Start(response);
        var usageField = p.Options.IncludeUsage;
        var usage = usageField ? ChunkUsage.Null : ChunkUsage.Absent;
        ChatCompletionChunk Chunk(ChatChunkChoice choice) => new(id, "chat.completion.chunk", created, p.Options.Model, [choice], usage);
        var completionTokens = 0;
        var begun = new bool[p.Options.N];
        try
        {
            var type = WireJson.Default.ChatCompletionChunk;
            await foreach (var (i, e) in service.RunAsync(p, key, ct).FlushWhenIdle(response, ct))
            {
                if (!begun[i])
                {
                    begun[i] = true;
                    Sse.Write(response, Chunk(new ChatChunkChoice(i, new ChatDelta("assistant", ""), null, null)), type);
                }
                var logprobs = e.Logprobs is { } lp ? new ChoiceLogprobs([LogprobMapping.Chat(lp, p.Model.Tokenizer)]) : null;
                if (e.Text.Length > 0 || logprobs is not null)
                    Sse.Write(response, Chunk(new ChatChunkChoice(i, new ChatDelta(null, e.Text), logprobs, null)), type);
                if (e.IsFinal)
                {
                    completionTokens += e.Usage!.CompletionTokens;
                    Sse.Write(response, Chunk(new ChatChunkChoice(i, new ChatDelta(null, null), null, Reason(e.FinishReason!.Value))), type);
                }
            }
            if (usageField)
            {
                var promptTokens = p.PromptIds.Length * p.Options.N;
                Sse.Write(response, new ChatCompletionChunk(id, "chat.completion.chunk", created, p.Options.Model, [],
                    ChunkUsage.Of(new UsageObject(promptTokens, completionTokens, promptTokens + completionTokens))), type);
            }
            await Sse.DoneAsync(response, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client disconnected: the engine request was cancelled with it and its memory freed.
        }
        catch (Exception) when (!ct.IsCancellationRequested)
        {
            await Sse.ErrorAsync(response, "The model failed while generating this completion.", CancellationToken.None);
        }
    }

    internal static string Reason(FinishReason r) => r == FinishReason.Length ? "length" : "stop";

    internal static IResult Refused(HttpContext http, CompletionRefusedException e)
    {
        if (e.RetryAfter is { } retry) http.Response.Headers.RetryAfter = Math.Ceiling(retry.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        return ApiErrors.Error(e.Status, e.Message, e.Type, e.Param, e.Code);
    }

    private static List<ChatMessage> ReadMessages(JsonElement messages)
    {
        if (messages.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) throw new InvalidRequestException("Missing required parameter: 'messages'.", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw new InvalidRequestException("'messages' must be an array.", "messages");
        if (messages.GetArrayLength() == 0) throw new InvalidRequestException("'messages' must contain at least one message.", "messages");
        var list = new List<ChatMessage>();
        var i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            var at = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw new InvalidRequestException($"'{at}' must be an object.", at);
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"'{at}.role' is required.", $"{at}.role");
            var r = role.GetString()!;
            if (!Roles.Contains(r)) throw new InvalidRequestException($"'{at}.role' must be one of system, developer, user, assistant; got '{r}'.", $"{at}.role");
            foreach (var p in m.EnumerateObject())
                if (p.Name is not ("role" or "content" or "name"))
                    throw new InvalidRequestException($"'{at}.{p.Name}' is not supported.", $"{at}.{p.Name}");
            list.Add(new ChatMessage(r == "developer" ? "system" : r, ReadContent(m, at)));
            i++;
        }
        return list;
    }

    private static string ReadContent(JsonElement m, string at)
    {
        if (!m.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            throw new InvalidRequestException($"'{at}.content' is required.", $"{at}.content");
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw new InvalidRequestException($"'{at}.content' must be a string or an array of text parts.", $"{at}.content");
        var sb = new StringBuilder();
        var j = 0;
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"'{at}.content[{j}]' must be a text part {{\"type\":\"text\",\"text\":\"...\"}}; other content types are not supported.", $"{at}.content[{j}]");
            sb.Append(text.GetString());
            j++;
        }
        return sb.ToString();
    }
}
