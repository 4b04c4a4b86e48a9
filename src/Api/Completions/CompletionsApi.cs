using Loom.Api.Auth;
using Loom.Data.Entities;
using System.Text;
using System.Text.Json;
using Loom.Api.Errors;
using Loom.Data.Keys;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Completions;

/// <summary>POST /v1/completions: OpenAI's legacy text completions, plain or streamed.</summary>
public static class CompletionsApi
{
    public static RouteGroupBuilder MapCompletions(this RouteGroupBuilder v1)
    {
        v1.MapPost("/completions", Create).WithName("CreateCompletion")
            .Accepts<JsonElement>("application/json").Produces<TextCompletion>().RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> Create(HttpContext http, CompletionService service, CancellationToken ct)
    {
        var key = http.Features.Get<AuthenticatedKey>()!;
        PreparedCompletion prepared;
        bool echo;
        string promptText;
        try
        {
            using var doc = await RequestBody.ReadJsonAsync(http.Request, ct);
            var reader = RequestReader.Parse(doc);
            promptText = ReadPrompt(reader.Get("prompt"));
            echo = reader.OptionalBool("echo") ?? false;
            if (reader.OptionalString("suffix") is not null) throw new InvalidRequestException("'suffix' is not supported by this server.", "suffix");
            var options = CompletionOptions.Read(reader, chat: false);
            if (reader.OptionalInteger("best_of", 1, CompletionOptions.MaxChoices) is { } bestOf && bestOf != options.N)
                throw new InvalidRequestException("'best_of' must equal 'n' on this server.", "best_of");
            reader.RejectUnknown();
            var model = await service.ResolveAsync(options.Model, ct);
            prepared = service.Prepare(model, model.Tokenizer.Encode(promptText, addSpecialTokens: true), options, key, CompletionService.PriorityOf(http.Request, key), "prompt");
        }
        catch (InvalidRequestException e) { return ApiErrors.BadRequest(e.Message, e.Param, e.Code); }
        catch (CompletionRefusedException e) { return ChatCompletionsApi.Refused(http, e); }

        var id = Sse.NewId("cmpl-");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var p = prepared;
        var tokenizer = p.Model.Tokenizer;
        var withLogprobs = p.Options.TopLogprobs is not null;

        if (p.Options.Stream)
        {
            var response = http.Response;
            var events = await service.RunAsync(p, key, ct).BeganAsync(ct); // a refusal before the first token is the answer's status
            Sse.Start(response);
            var completionTokens = 0;
            TextCompletion Chunk(TextChoice c, UsageObject? u = null) => new(id, "text_completion", created, p.Options.Model, c is null ? [] : [c], u);
            try
            {
                var echoed = new bool[p.Options.N];
                var type = WireJson.Default.TextCompletion;
                await foreach (var (i, e) in events.FlushWhenIdle(response, ct))
                {
                    var text = e.Text;
                    if (echo && !echoed[i]) { echoed[i] = true; text = promptText + text; }
                    LegacyLogprobs? lp = e.Logprobs is { } l
                        ? new([tokenizer.Decode([l.TokenId], false)], [l.Logprob], [LogprobMapping.LegacyTop(l, tokenizer)], [0]) : null;
                    if (text.Length > 0 || lp is not null || e.IsFinal)
                        Sse.Write(response, Chunk(new TextChoice(text, i, lp, e.IsFinal ? ChatCompletionsApi.Reason(e.FinishReason!.Value) : null)), type);
                    if (e.IsFinal) completionTokens += e.Usage!.CompletionTokens;
                }
                if (p.Options.IncludeUsage)
                {
                    var promptTokens = p.PromptIds.Length;
                    Sse.Write(response, Chunk(null!, new UsageObject(promptTokens, completionTokens, promptTokens + completionTokens)), type);
                }
                await Sse.DoneAsync(response, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                await Sse.ErrorAsync(response, e, CancellationToken.None);
            }
            return Results.Empty;
        }

        var n = p.Options.N;
        var texts = Enumerable.Range(0, n).Select(_ => new StringBuilder(echo ? promptText : "")).ToArray();
        var tokens = Enumerable.Range(0, n).Select(_ => new List<string>()).ToArray();
        var tokenLps = Enumerable.Range(0, n).Select(_ => new List<float>()).ToArray();
        var tops = Enumerable.Range(0, n).Select(_ => new List<Dictionary<string, float>>()).ToArray();
        var offsets = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
        var finish = new string[n];
        var total = 0;
        await foreach (var (i, e) in service.RunAsync(p, key, ct))
        {
            if (e.Logprobs is { } l)
            {
                offsets[i].Add(texts[i].Length);
                tokens[i].Add(tokenizer.Decode([l.TokenId], false));
                tokenLps[i].Add(l.Logprob);
                tops[i].Add(LogprobMapping.LegacyTop(l, tokenizer));
            }
            texts[i].Append(e.Text);
            if (e.IsFinal) { finish[i] = ChatCompletionsApi.Reason(e.FinishReason!.Value); total += e.Usage!.CompletionTokens; }
        }
        var promptCount = p.PromptIds.Length; // once, whatever n (as OpenAI counts it)
        var choices = Enumerable.Range(0, n).Select(i => new TextChoice(texts[i].ToString(), i,
            withLogprobs ? new LegacyLogprobs(tokens[i], tokenLps[i], tops[i], offsets[i]) : null, finish[i])).ToList();
        return Results.Json(new TextCompletion(id, "text_completion", created, p.Options.Model, choices, new UsageObject(promptCount, total, promptCount + total)));
    }

    private static string ReadPrompt(JsonElement prompt)
    {
        switch (prompt.ValueKind)
        {
            case JsonValueKind.Undefined or JsonValueKind.Null:
                throw new InvalidRequestException("Missing required parameter: 'prompt'.", "prompt");
            case JsonValueKind.String:
                return prompt.GetString()!;
            case JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String:
                return prompt[0].GetString()!;
            case JsonValueKind.Array:
                throw new InvalidRequestException("'prompt' must be one string (batches of prompts and token-id prompts are not supported).", "prompt");
            default:
                throw new InvalidRequestException("'prompt' must be a string.", "prompt");
        }
    }
}
