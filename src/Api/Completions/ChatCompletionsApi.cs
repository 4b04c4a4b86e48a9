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
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

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
        ToolCalling tools;
        try
        {
            using var doc = await RequestBody.ReadJsonAsync(http.Request, ct);
            var reader = RequestReader.Parse(doc);
            var messages = ReadMessages(reader.Get("messages"));
            var options = CompletionOptions.Read(reader, chat: true);
            tools = ToolCalling.Read(reader);
            reader.RejectUnknown();
            if (tools.Constraint() is var (grammar, trigger))
            {
                if (options.Grammar is not null)
                    throw new InvalidRequestException("'response_format' with a JSON schema cannot be combined with tool calls; use tool_choice 'none' or drop one.", "response_format");
                options = options with { Grammar = grammar, GrammarTrigger = trigger };
            }
            messages = [.. tools.Render(messages)];
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
            await StreamAsync(http, service, prepared, key, id, created, tools, ct);
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
        var promptTokens = prepared.PromptIds.Length; // once, whatever n: the choices share one prompt (and one prefill)
        var choices = Enumerable.Range(0, n).Select(i =>
        {
            var (message, reason) = Message(tools, text[i].ToString(), finish[i]);
            return new ChatChoice(i, message, prepared.Options.TopLogprobs is null ? null : new ChoiceLogprobs(logprobs[i]), reason);
        }).ToList();
        return Results.Json(new ChatCompletion(id, "chat.completion", created, prepared.Options.Model, choices,
            new UsageObject(promptTokens, completionTokens, promptTokens + completionTokens)));
    }

    /// <summary>The assistant message of a choice: with tools, the calls split out of the text (finish_reason "tool_calls").</summary>
    private static (ChatMessageObject Message, string Finish) Message(ToolCalling tools, string text, string finish)
    {
        if (!tools.Enabled) return (new ChatMessageObject("assistant", text), finish);
        var (content, calls) = tools.Parse(text);
        return calls.Count == 0 ? (new ChatMessageObject("assistant", content ?? ""), finish)
            : (new ChatMessageObject("assistant", content, calls), finish == "stop" ? "tool_calls" : finish);
    }

    private static async Task StreamAsync(HttpContext http, CompletionService service, PreparedCompletion p, AuthenticatedKey key, string id, long created, ToolCalling tools, CancellationToken ct)
    {
        var response = http.Response;
        var events = await service.RunAsync(p, key, ct).BeganAsync(ct); // a refusal before the first token is the answer's status
        Sse.Start(response);
        var usageField = p.Options.IncludeUsage;
        var usage = usageField ? ChunkUsage.Null : ChunkUsage.Absent;
        ChatCompletionChunk Chunk(ChatChunkChoice choice) => new(id, "chat.completion.chunk", created, p.Options.Model, [choice], usage);
        var completionTokens = 0;
        var begun = new bool[p.Options.N];
        // With tools, each choice's text is split as it arrives: text as content, calls argument by argument.
        var split = tools.Enabled ? Enumerable.Range(0, p.Options.N).Select(_ => new ToolCallStream(tools.Forced)).ToArray() : null;
        try
        {
            var type = WireJson.Default.ChatCompletionChunk;
            void Write(int i, ChatDelta delta, ChoiceLogprobs? logprobs = null, string? finish = null) =>
                Sse.Write(response, Chunk(new ChatChunkChoice(i, delta, logprobs, finish)), type);
            // With tools the text is held back while it may start a call, so a token's logprob rides on the next chunk
            // written for its choice (or the finishing one): every token's entry arrives once, in order, as without streaming.
            var pending = split is null ? null : Enumerable.Range(0, p.Options.N).Select(_ => new List<TokenLogprobObject>()).ToArray();
            ChoiceLogprobs? TakePending(int i)
            {
                if (pending is null || pending[i].Count == 0) return null;
                var taken = new ChoiceLogprobs([.. pending[i]]);
                pending[i].Clear();
                return taken;
            }
            void WritePieces(int i, IReadOnlyList<ToolStreamPiece> pieces)
            {
                foreach (var piece in pieces)
                    Write(i, piece switch
                    {
                        TextPiece t => new ChatDelta(null, t.Text),
                        CallStartedPiece c => new ChatDelta(null, null, [new ToolCallDelta(c.Index, c.Id, "function", new ToolCallFunctionDelta(c.Name, ""))]),
                        ArgumentsPiece a => new ChatDelta(null, null, [new ToolCallDelta(a.Index, null, null, new ToolCallFunctionDelta(null, a.Fragment))]),
                        _ => throw new InvalidOperationException($"unknown piece {piece}"),
                    }, TakePending(i));
            }
            await foreach (var (i, e) in events.FlushWhenIdle(response, ct))
            {
                if (!begun[i])
                {
                    begun[i] = true;
                    Write(i, new ChatDelta("assistant", ""));
                }
                if (split is not null)
                {
                    if (e.Logprobs is { } held) pending![i].Add(LogprobMapping.Chat(held, p.Model.Tokenizer));
                    WritePieces(i, split[i].Push(e.Text));
                }
                else
                {
                    var logprobs = e.Logprobs is { } lp ? new ChoiceLogprobs([LogprobMapping.Chat(lp, p.Model.Tokenizer)]) : null;
                    if (e.Text.Length > 0 || logprobs is not null) Write(i, new ChatDelta(null, e.Text), logprobs);
                }
                if (e.IsFinal)
                {
                    completionTokens += e.Usage!.CompletionTokens;
                    var finish = Reason(e.FinishReason!.Value);
                    if (split is not null)
                    {
                        WritePieces(i, split[i].Finish());
                        if (split[i].Calls > 0 && finish == "stop") finish = "tool_calls";
                    }
                    Write(i, new ChatDelta(null, null), TakePending(i), finish);
                }
            }
            if (usageField)
            {
                var promptTokens = p.PromptIds.Length;
                Sse.Write(response, new ChatCompletionChunk(id, "chat.completion.chunk", created, p.Options.Model, [],
                    ChunkUsage.Of(new UsageObject(promptTokens, completionTokens, promptTokens + completionTokens))), type);
            }
            await Sse.DoneAsync(response, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client disconnected: the engine request was cancelled with it and its memory freed.
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            await Sse.ErrorAsync(response, e, CancellationToken.None);
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
            if (!Roles.Contains(r)) throw new InvalidRequestException($"'{at}.role' must be one of system, developer, user, assistant, tool; got '{r}'.", $"{at}.role");
            foreach (var p in m.EnumerateObject())
                if (!(p.Name is "role" or "content" or "name" || (p.Name == "tool_calls" && r == "assistant") || (p.Name == "tool_call_id" && r == "tool")))
                    throw new InvalidRequestException($"'{at}.{p.Name}' is not supported.", $"{at}.{p.Name}");
            if (r == "assistant" && m.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
            {
                // An earlier answer that called functions, written back in the format the model writes calls in.
                var text = m.TryGetProperty("content", out var c) && c.ValueKind != JsonValueKind.Null ? ReadContent(m, at) + "\n" : "";
                list.Add(new ChatMessage("assistant", text + ToolCalling.WriteCalls(ReadCalls(calls, $"{at}.tool_calls"))));
            }
            else if (r == "tool")
            {
                if (!m.TryGetProperty("tool_call_id", out var callId) || callId.ValueKind != JsonValueKind.String)
                    throw new InvalidRequestException($"'{at}.tool_call_id' is required for a tool message.", $"{at}.tool_call_id");
                list.Add(new ChatMessage("user", ToolCalling.WriteResult(ReadContent(m, at))));
            }
            else list.Add(new ChatMessage(r == "developer" ? "system" : r, ReadContent(m, at)));
            i++;
        }
        return list;
    }

    private static List<(string Name, string Arguments)> ReadCalls(JsonElement calls, string at)
    {
        var list = new List<(string, string)>();
        int j = 0;
        foreach (var call in calls.EnumerateArray())
        {
            string where = $"{at}[{j++}]";
            if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object
                || !f.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || !f.TryGetProperty("arguments", out var args) || args.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"'{where}' must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}} with arguments as a JSON string.", where);
            try { using var _ = JsonDocument.Parse(args.GetString()!); }
            catch (JsonException) { throw new InvalidRequestException($"'{where}.function.arguments' is not valid JSON.", $"{where}.function.arguments"); }
            list.Add((name.GetString()!, args.GetString()!));
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
