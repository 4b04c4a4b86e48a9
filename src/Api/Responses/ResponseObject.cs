using System.Text.Json.Nodes;
using Loom.Api.Completions;

namespace Loom.Api.Responses;

/// <summary>The Responses API's <c>response</c> object, field for field, and its output items from a finished
/// generation.</summary>
internal static class ResponseObject
{
    public static JsonObject Build(ResponseRequest q, string id, long createdAt, string status, JsonArray output, (int Input, int Output)? usage, string? incompleteReason = null) => new()
    {
        ["id"] = id,
        ["object"] = "response",
        ["created_at"] = createdAt,
        ["status"] = status,
        ["background"] = false,
        ["error"] = null,
        ["incomplete_details"] = incompleteReason is null ? null : new JsonObject { ["reason"] = incompleteReason },
        ["instructions"] = q.Instructions,
        ["max_output_tokens"] = q.Options.MaxTokens,
        ["model"] = q.Options.Model,
        ["output"] = output,
        ["parallel_tool_calls"] = q.Tools.Parallel,
        ["previous_response_id"] = q.PreviousResponseId,
        ["reasoning"] = new JsonObject { ["effort"] = null, ["summary"] = null },
        ["store"] = q.Store,
        ["temperature"] = q.Options.Temperature,
        ["text"] = q.TextEcho.DeepClone(),
        ["tool_choice"] = q.ToolChoiceEcho.DeepClone(),
        ["tools"] = q.ToolsEcho.DeepClone(),
        ["top_p"] = q.Options.TopP,
        ["truncation"] = "disabled",
        ["usage"] = usage is var (i, o) ? new JsonObject
        {
            ["input_tokens"] = i, ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = 0 },
            ["output_tokens"] = o, ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
            ["total_tokens"] = i + o,
        } : null,
        ["user"] = q.Options.User,
        ["metadata"] = q.Metadata.DeepClone(),
    };

    /// <summary>The output items of a finished generation: a message with the text (if any), then one
    /// <c>function_call</c> item per call the model made.</summary>
    public static JsonArray Output(ToolCalling tools, string text, bool cut)
    {
        var output = new JsonArray();
        var (content, calls) = tools.Enabled ? tools.Parse(text) : (text, []);
        if (!string.IsNullOrEmpty(content) || calls.Count == 0)
            output.Add(ResponseItems.Message("assistant", "output_text", content ?? "", cut ? "incomplete" : "completed"));
        foreach (var call in calls) output.Add(FunctionCall(call));
        return output;
    }

    public static JsonObject FunctionCall(ToolCallObject call) => new()
    {
        ["id"] = "fc_" + call.Id["call_".Length..], ["type"] = "function_call", ["status"] = "completed",
        ["call_id"] = call.Id, ["name"] = call.Function.Name, ["arguments"] = call.Function.Arguments,
    };
}
