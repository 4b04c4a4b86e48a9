using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Api.Auth;
using Loom.Api.Completions;
using Loom.Api.Errors;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Inference.Engine;
using Loom.Inference.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Responses;

/// <summary>OpenAI's Responses API: POST /v1/responses (plain or streamed), GET and DELETE /v1/responses/{id}, and
/// GET /v1/responses/{id}/input_items. Generation runs through <see cref="CompletionService"/>, as chat completions do.</summary>
public static class ResponsesApi
{
    public static RouteGroupBuilder MapResponses(this RouteGroupBuilder v1)
    {
        v1.MapPost("/responses", Create).WithName("CreateResponse").Accepts<JsonElement>("application/json").RequireScope(ApiKeyScopes.Inference);
        v1.MapGet("/responses/{id}", Get).WithName("GetResponse").RequireScope(ApiKeyScopes.Inference);
        v1.MapDelete("/responses/{id}", Delete).WithName("DeleteResponse").RequireScope(ApiKeyScopes.Inference);
        v1.MapGet("/responses/{id}/input_items", InputItems).WithName("ListResponseInputItems").RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> Create(HttpContext http, CompletionService service, ResponseStore store, CancellationToken ct)
    {
        var key = http.Features.Get<AuthenticatedKey>()!;
        ResponseRequest q;
        PreparedCompletion prepared;
        int depth;
        try
        {
            using var doc = await RequestBody.ReadJsonAsync(http.Request, ct);
            q = ResponseRequest.Read(RequestReader.Parse(doc), store.Limits);
            var messages = new List<ChatMessage>();
            if (q.Instructions is { } instructions) messages.Add(new ChatMessage("system", instructions));
            depth = 1;
            if (q.PreviousResponseId is { } previous)
            {
                var history = await store.HistoryAsync(previous, ct)
                    ?? throw new CompletionRefusedException(404, $"Previous response with id '{previous}' not found.", "invalid_request_error", "previous_response_id", "previous_response_not_found");
                messages.AddRange(history.Messages);
                depth = history.Depth + 1;
            }
            ResponseItems.AppendMessages(messages, q.InputItems);
            var model = await service.ResolveAsync(q.Options.Model, ct);
            int[] prompt;
            try { prompt = model.Tokenizer.EncodeChat(q.Tools.Render(messages)); }
            catch (InvalidOperationException e) { throw new InvalidRequestException(e.Message, "model"); }
            prepared = service.Prepare(model, prompt, q.Options, key, CompletionService.PriorityOf(http.Request, key), "input");
            if (q.Store) CheckStoredSize(q, prepared.MaxTokens, store.Limits);
        }
        catch (InvalidRequestException e) { return ApiErrors.BadRequest(e.Message, e.Param, e.Code); }
        catch (CompletionRefusedException e) { return ChatCompletionsApi.Refused(http, e); }

        var id = Sse.NewId("resp_");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (q.Options.Stream)
        {
            await StreamAsync(http, service, store, q, prepared, key, id, created, depth, ct);
            return Results.Empty;
        }

        var text = new StringBuilder();
        var (cut, outputTokens) = (false, 0);
        await foreach (var (_, e) in service.RunAsync(prepared, key, ct))
        {
            text.Append(e.Text);
            if (e.IsFinal) (cut, outputTokens) = (e.FinishReason == FinishReason.Length, e.Usage!.CompletionTokens);
        }
        var response = Finished(q, id, created, ResponseObject.Output(q.Tools, text.ToString(), cut), cut, prepared.PromptIds.Length, outputTokens);
        if (q.Store) await store.SaveAsync(key.Key.TenantId, response, q.InputItems, depth, ct);
        return Results.Text(response.ToJsonString(), "application/json", Encoding.UTF8);
    }

    private static JsonObject Finished(ResponseRequest q, string id, long created, JsonArray output, bool cut, int inputTokens, int outputTokens) =>
        ResponseObject.Build(q, id, created, cut ? "incomplete" : "completed", output, (inputTokens, outputTokens), cut ? "max_output_tokens" : null);

    /// <summary>Refuses, before generating, a response whose stored row could pass the bound: what the request brings plus
    /// the output at its longest (16 bytes a token covers any token's JSON-escaped text).</summary>
    private static void CheckStoredSize(ResponseRequest q, int maxTokens, ResponsesOptions limits)
    {
        long bytes = q.InputItems.ToJsonString().Length + (q.Instructions?.Length ?? 0) * 2L + q.ToolsEcho.ToJsonString().Length
            + q.TextEcho.ToJsonString().Length + q.Metadata.ToJsonString().Length + 16L * maxTokens;
        if (bytes > limits.MaxStoredBytes)
            throw new InvalidRequestException($"This response would take up to {bytes} bytes to store, more than the {limits.MaxStoredBytes} allowed; send less input, lower 'max_output_tokens', or set 'store' to false.", "store");
    }

    private static async Task StreamAsync(HttpContext http, CompletionService service, ResponseStore store, ResponseRequest q, PreparedCompletion p,
        AuthenticatedKey key, string id, long created, int depth, CancellationToken ct)
    {
        var response = http.Response;
        var generated = await service.RunAsync(p, key, ct).BeganAsync(ct); // a refusal before the first token is the answer's status
        Sse.Start(response);
        var events = new ResponseEvents(response);
        try
        {
            var snapshot = ResponseObject.Build(q, id, created, "in_progress", [], null);
            events.Write("response.created", new JsonObject { ["response"] = snapshot.DeepClone() });
            events.Write("response.in_progress", new JsonObject { ["response"] = snapshot });
            // Text streams as it comes; with tools, calls stream argument by argument as their text arrives.
            var streamed = new StreamedOutput(events, q.Tools);
            var (cut, outputTokens) = (false, 0);
            await foreach (var (_, e) in generated.FlushWhenIdle(response, ct))
            {
                streamed.Push(e.Text);
                if (e.IsFinal) (cut, outputTokens) = (e.FinishReason == FinishReason.Length, e.Usage!.CompletionTokens);
            }
            var output = streamed.Finish(cut);
            var final = Finished(q, id, created, output, cut, p.PromptIds.Length, outputTokens);
            if (q.Store) await store.SaveAsync(key.Key.TenantId, final, q.InputItems, depth, ct);
            events.Write(cut ? "response.incomplete" : "response.completed", new JsonObject { ["response"] = final });
            await events.FlushAsync(ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client disconnected: the engine request was cancelled with it, and nothing was stored.
        }
        catch (Exception) when (!ct.IsCancellationRequested)
        {
            events.Write("error", new JsonObject { ["code"] = "server_error", ["message"] = "The model failed while generating this response.", ["param"] = null });
            await events.FlushAsync(CancellationToken.None);
        }
    }

    private static async Task<IResult> Get(string id, ResponseStore store, CancellationToken ct) =>
        await store.FindAsync(id, ct) is { } r ? Results.Text(r.Body, "application/json", Encoding.UTF8) : NotFound(id);

    private static async Task<IResult> Delete(string id, ResponseStore store, CancellationToken ct) =>
        await store.DeleteAsync(id, ct) ? Results.Json(new { id, @object = "response", deleted = true }) : NotFound(id);

    /// <summary>The response's input items, newest first unless <c>order=asc</c>, <c>limit</c> (1 to 100, default 20) at a
    /// time after the item <c>after</c>.</summary>
    private static async Task<IResult> InputItems(string id, HttpRequest request, ResponseStore store, CancellationToken ct)
    {
        var query = request.Query;
        var limit = 20;
        if (query.TryGetValue("limit", out var l) && (!int.TryParse(l, out limit) || limit is < 1 or > 100))
            return ApiErrors.BadRequest("'limit' must be an integer between 1 and 100.", "limit");
        var order = query.TryGetValue("order", out var o) ? o.ToString() : "desc";
        if (order is not ("asc" or "desc")) return ApiErrors.BadRequest("'order' must be 'asc' or 'desc'.", "order");
        foreach (var name in query.Keys)
            if (name is not ("limit" or "order" or "after" or "include" or "include[]"))
                return ApiErrors.BadRequest($"Unrecognized query parameter: {name}", name);
        if (await store.FindAsync(id, ct) is not { } r) return NotFound(id);

        var items = JsonNode.Parse(r.InputItems)!.AsArray().Select(n => n!.DeepClone()).ToList();
        if (order == "desc") items.Reverse();
        if (query.TryGetValue("after", out var after))
        {
            var at = items.FindIndex(n => (string?)n["id"] == after.ToString());
            if (at < 0) return ApiErrors.BadRequest($"'after' names no input item of response '{id}'.", "after");
            items = items[(at + 1)..];
        }
        var page = items.Take(limit).ToList();
        var list = new JsonObject
        {
            ["object"] = "list", ["data"] = new JsonArray([.. page]),
            ["first_id"] = page.Count > 0 ? (string?)page[0]!["id"] : null, ["last_id"] = page.Count > 0 ? (string?)page[^1]!["id"] : null,
            ["has_more"] = items.Count > page.Count,
        };
        return Results.Text(list.ToJsonString(), "application/json", Encoding.UTF8);
    }

    private static IResult NotFound(string id) =>
        ApiErrors.NotFound($"No response found with id '{id}'.", "response_id", "response_not_found");
}
