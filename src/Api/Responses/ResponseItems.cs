using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Api.Completions;
using Loom.Inference.Tokenization;

namespace Loom.Api.Responses;

/// <summary>
/// The Responses API's items: the request's <c>input</c> (a string, or message, <c>function_call</c> and
/// <c>function_call_output</c> items) validated and written in the form the API lists them (each with an id), and
/// items turned into the chat messages the model's template reads (calls and results in the tool-call format of
/// <see cref="ToolCalling"/>).
/// </summary>
internal static class ResponseItems
{
    private static readonly HashSet<string> Roles = ["user", "system", "developer", "assistant"];

    /// <summary>The input as items with ids. <paramref name="maxItems"/> bounds their number.</summary>
    public static JsonArray Normalize(JsonElement input, int maxItems)
    {
        if (input.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) throw new InvalidRequestException("Missing required parameter: 'input'.", "input");
        if (input.ValueKind == JsonValueKind.String) return [Message("user", "input_text", input.GetString()!)];
        if (input.ValueKind != JsonValueKind.Array) throw new InvalidRequestException("'input' must be a string or an array of input items.", "input");
        if (input.GetArrayLength() == 0) throw new InvalidRequestException("'input' must contain at least one item.", "input");
        if (input.GetArrayLength() > maxItems) throw new InvalidRequestException($"'input' takes at most {maxItems} items.", "input");
        var items = new JsonArray();
        var i = 0;
        foreach (var item in input.EnumerateArray())
        {
            var at = $"input[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw new InvalidRequestException($"'{at}' must be an object.", at);
            var type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type is null && item.TryGetProperty("role", out _)) type = "message";
            items.Add(type switch
            {
                "message" => ReadMessage(item, at),
                "function_call" => ReadCall(item, at),
                "function_call_output" => ReadOutput(item, at),
                null => throw new InvalidRequestException($"'{at}' needs a 'type' (message, function_call or function_call_output) or a 'role'.", $"{at}.type"),
                _ => throw new InvalidRequestException($"'{at}.type' '{type}' is not supported; use message, function_call or function_call_output.", $"{at}.type"),
            });
        }
        return items;
    }

    private static JsonObject ReadMessage(JsonElement m, string at)
    {
        Only(m, at, "type", "role", "content", "id", "status");
        if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String || !Roles.Contains(role.GetString()!))
            throw new InvalidRequestException($"'{at}.role' must be one of user, system, developer, assistant.", $"{at}.role");
        var r = role.GetString()!;
        var partType = r == "assistant" ? "output_text" : "input_text";
        if (!m.TryGetProperty("content", out var content) || content.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
            throw new InvalidRequestException($"'{at}.content' is required.", $"{at}.content");
        if (content.ValueKind == JsonValueKind.String) return Message(r, partType, content.GetString()!);
        if (content.ValueKind != JsonValueKind.Array) throw new InvalidRequestException($"'{at}.content' must be a string or an array of text parts.", $"{at}.content");
        var parts = new JsonArray();
        var j = 0;
        foreach (var part in content.EnumerateArray())
        {
            var where = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var pt) || pt.GetString() is not ("input_text" or "output_text" or "text")
                || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException($"'{where}' must be a text part {{\"type\": \"input_text\", \"text\": \"...\"}}; images, files and audio are not supported.", where);
            parts.Add(TextPart(partType, text.GetString()!));
        }
        return new JsonObject { ["id"] = Sse.NewId("msg_"), ["type"] = "message", ["role"] = r, ["status"] = "completed", ["content"] = parts };
    }

    private static JsonObject ReadCall(JsonElement c, string at)
    {
        Only(c, at, "type", "id", "call_id", "name", "arguments", "status");
        var callId = RequiredString(c, "call_id", at);
        var name = RequiredString(c, "name", at);
        var arguments = RequiredString(c, "arguments", at);
        try { using var _ = JsonDocument.Parse(arguments); }
        catch (JsonException) { throw new InvalidRequestException($"'{at}.arguments' is not valid JSON.", $"{at}.arguments"); }
        return new JsonObject
        {
            ["id"] = c.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && id.GetString()!.Length <= 64 ? id.GetString() : Sse.NewId("fc_"),
            ["type"] = "function_call", ["status"] = "completed", ["call_id"] = callId, ["name"] = name, ["arguments"] = arguments,
        };
    }

    private static JsonObject ReadOutput(JsonElement o, string at)
    {
        Only(o, at, "type", "id", "call_id", "output", "status");
        var callId = RequiredString(o, "call_id", at);
        if (!o.TryGetProperty("output", out var output)) throw new InvalidRequestException($"'{at}.output' is required.", $"{at}.output");
        string text;
        if (output.ValueKind == JsonValueKind.String) text = output.GetString()!;
        else if (output.ValueKind == JsonValueKind.Array)
        {
            var sb = new StringBuilder();
            foreach (var part in output.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    throw new InvalidRequestException($"'{at}.output' must be a string or an array of text parts.", $"{at}.output");
                sb.Append(t.GetString());
            }
            text = sb.ToString();
        }
        else throw new InvalidRequestException($"'{at}.output' must be a string or an array of text parts.", $"{at}.output");
        return new JsonObject { ["id"] = Sse.NewId("fco_"), ["type"] = "function_call_output", ["status"] = "completed", ["call_id"] = callId, ["output"] = text };
    }

    public static JsonObject Message(string role, string partType, string text, string status = "completed") => new()
    {
        ["id"] = Sse.NewId("msg_"), ["type"] = "message", ["role"] = role, ["status"] = status, ["content"] = new JsonArray(TextPart(partType, text)),
    };

    public static JsonObject TextPart(string type, string text) =>
        type == "output_text" ? new() { ["type"] = type, ["text"] = text, ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray() }
            : new() { ["type"] = type, ["text"] = text };

    /// <summary>Chat messages for items (input or output, already in the listed form), appended to <paramref name="into"/>:
    /// assistant calls in the call format (joined to the assistant text before them), results as user turns.</summary>
    public static void AppendMessages(List<ChatMessage> into, IEnumerable<JsonNode?> items)
    {
        var calls = new List<(string Name, string Arguments)>();
        void FlushCalls()
        {
            if (calls.Count == 0) return;
            var written = ToolCalling.WriteCalls(calls);
            if (into.Count > 0 && into[^1].Role == "assistant") into[^1] = into[^1] with { Content = into[^1].Content + "\n" + written };
            else into.Add(new ChatMessage("assistant", written));
            calls.Clear();
        }
        foreach (var item in items.OfType<JsonObject>())
        {
            switch ((string?)item["type"])
            {
                case "function_call":
                    calls.Add(((string)item["name"]!, (string)item["arguments"]!));
                    break;
                case "function_call_output":
                    FlushCalls();
                    into.Add(new ChatMessage("user", ToolCalling.WriteResult((string)item["output"]!)));
                    break;
                case "message":
                    FlushCalls();
                    var role = (string)item["role"]!;
                    var text = string.Concat(item["content"]!.AsArray().OfType<JsonObject>().Select(p => (string?)p["text"] ?? ""));
                    into.Add(new ChatMessage(role == "developer" ? "system" : role, text));
                    break;
            }
        }
        FlushCalls();
    }

    private static string RequiredString(JsonElement o, string name, string at)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.String || v.GetString()!.Length == 0)
            throw new InvalidRequestException($"'{at}.{name}' is required and must be a non-empty string.", $"{at}.{name}");
        return v.GetString()!;
    }

    private static void Only(JsonElement o, string at, params string[] fields)
    {
        foreach (var p in o.EnumerateObject())
            if (Array.IndexOf(fields, p.Name) < 0)
                throw new InvalidRequestException($"Unrecognized field '{p.Name}' in '{at}'.", $"{at}.{p.Name}");
    }
}
