using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Api.Completions;
using Loom.Inference.Constrained;

namespace Loom.Api.Responses;

/// <summary>A validated POST /v1/responses body: the generation options (the same ones chat completions run with), the
/// tools, the input items, and the fields the response object echoes back.</summary>
internal sealed record ResponseRequest(
    CompletionOptions Options, ToolCalling Tools, JsonArray InputItems, string? Instructions, string? PreviousResponseId, bool Store,
    JsonObject Metadata, JsonNode ToolsEcho, JsonNode ToolChoiceEcho, JsonNode TextEcho)
{
    public const int MaxMetadataKeys = 16;

    public static ResponseRequest Read(RequestReader r, ResponsesOptions limits)
    {
        var model = r.RequiredString("model");
        if (model.Length == 0) throw new InvalidRequestException("'model' must not be empty.", "model");
        var input = ResponseItems.Normalize(r.Get("input"), limits.MaxInputItems);
        var instructions = r.OptionalString("instructions");
        var previous = r.OptionalString("previous_response_id");
        if (previous is { Length: 0 or > 64 }) throw new InvalidRequestException("'previous_response_id' is not a response id.", "previous_response_id");
        var store = r.OptionalBool("store") ?? true;
        var stream = r.OptionalBool("stream") ?? false;
        ReadStreamOptions(r, stream);
        var format = ReadTextFormat(r.Get("text"), out var textEcho);
        var tools = ReadTools(r, out var toolsEcho, out var choiceEcho);
        if (tools.Constraint() is not null && format is not null)
            throw new InvalidRequestException("'text.format' with a JSON schema cannot be combined with tool calls; use tool_choice 'none' or drop one.", "text.format");

        var options = new CompletionOptions
        {
            Model = model,
            MaxTokens = (int?)r.OptionalInteger("max_output_tokens", 1, int.MaxValue),
            Temperature = (float)(r.OptionalNumber("temperature", 0, 2) ?? 1),
            TopP = (float)(r.OptionalNumber("top_p", 0, 1) ?? 1),
            Stream = stream,
            User = r.OptionalString("user"),
            Grammar = format,
        };
        if (options.TopP == 0) throw new InvalidRequestException("'top_p' must be greater than 0.", "top_p");
        if (tools.Constraint() is var (grammar, trigger)) options = options with { Grammar = grammar, GrammarTrigger = trigger };
        var metadata = ReadMetadata(r.Get("metadata"));
        AcceptDefaults(r);
        r.RejectUnknown();
        return new ResponseRequest(options, tools, input, instructions, previous, store, metadata, toolsEcho, choiceEcho, textEcho);
    }

    private static void ReadStreamOptions(RequestReader r, bool stream)
    {
        var so = r.Get("stream_options");
        if (so.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return;
        if (!stream) throw new InvalidRequestException("'stream_options' is only allowed when 'stream' is true.", "stream_options");
        if (so.ValueKind != JsonValueKind.Object) throw new InvalidRequestException("'stream_options' must be an object.", "stream_options");
        foreach (var p in so.EnumerateObject())
            if (p.Name != "include_obfuscation" || p.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new InvalidRequestException($"Unrecognized stream option: {p.Name}", "stream_options");
    }

    /// <summary><c>text: {format: ...}</c> (text, json_object or json_schema in the flat Responses shape).</summary>
    private static JsonGrammar? ReadTextFormat(JsonElement text, out JsonNode echo)
    {
        echo = new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } };
        if (text.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        if (text.ValueKind != JsonValueKind.Object) throw new InvalidRequestException("'text' must be an object.", "text");
        JsonGrammar? grammar = null;
        foreach (var p in text.EnumerateObject())
        {
            if (p.Name == "format")
            {
                grammar = ResponseFormat.Read(p.Value, "text.format");
                if (p.Value.ValueKind == JsonValueKind.Object) echo["format"] = JsonNode.Parse(p.Value.GetRawText());
            }
            else if (p.Name == "verbosity" && p.Value.ValueKind is JsonValueKind.Null or JsonValueKind.String) { }
            else throw new InvalidRequestException($"Unrecognized field '{p.Name}' in 'text'.", $"text.{p.Name}");
        }
        return grammar;
    }

    /// <summary>Function tools in the Responses shape (<c>{type: "function", name, description, parameters, strict}</c>)
    /// and <c>tool_choice</c> (<c>none</c>, <c>auto</c>, <c>required</c>, or <c>{type: "function", name}</c>).</summary>
    private static ToolCalling ReadTools(RequestReader r, out JsonNode toolsEcho, out JsonNode choiceEcho)
    {
        var element = r.Get("tools");
        var tools = new List<ToolSpec>();
        toolsEcho = new JsonArray();
        if (element.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
        {
            if (element.ValueKind != JsonValueKind.Array || element.GetArrayLength() > ToolCalling.MaxTools)
                throw new InvalidRequestException($"'tools' must be an array of at most {ToolCalling.MaxTools} tools.", "tools");
            var i = 0;
            foreach (var t in element.EnumerateArray())
            {
                var at = $"tools[{i++}]";
                if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                    throw new InvalidRequestException($"'{at}' must be a function tool {{\"type\": \"function\", \"name\", \"parameters\"}}.", at);
                if (type.GetString() != "function")
                    throw new InvalidRequestException($"'{at}.type' '{type.GetString()}' is not supported; only function tools are.", $"{at}.type");
                foreach (var p in t.EnumerateObject())
                    if (p.Name is not ("type" or "name" or "description" or "parameters" or "strict"))
                        throw new InvalidRequestException($"Unrecognized field '{p.Name}' in '{at}'.", $"{at}.{p.Name}");
                var spec = ToolCalling.ReadTool(t, at, tools);
                tools.Add(spec);
                toolsEcho.AsArray().Add(new JsonObject
                {
                    ["type"] = "function", ["name"] = spec.Name, ["description"] = spec.Description,
                    ["parameters"] = JsonNode.Parse(spec.Parameters.GetRawText()),
                    ["strict"] = t.TryGetProperty("strict", out var s) && s.ValueKind == JsonValueKind.True,
                });
            }
        }
        var parallel = r.OptionalBool("parallel_tool_calls") ?? true;
        var choice = r.Get("tool_choice");
        var mode = ToolChoiceMode.Auto;
        string? named = null;
        choiceEcho = JsonValue.Create("auto");
        if (choice.ValueKind == JsonValueKind.String)
        {
            mode = ToolCalling.ChoiceMode(choice.GetString());
            choiceEcho = JsonValue.Create(choice.GetString())!;
        }
        else if (choice.ValueKind == JsonValueKind.Object)
        {
            if (!choice.TryGetProperty("type", out var type) || type.GetString() != "function" || !choice.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException("'tool_choice' must name a function: {\"type\": \"function\", \"name\": ...}.", "tool_choice");
            named = n.GetString()!;
            if (!tools.Any(t => t.Name == named)) throw new InvalidRequestException($"'tool_choice' names '{named}', which is not among 'tools'.", "tool_choice");
            mode = ToolChoiceMode.Named;
            choiceEcho = new JsonObject { ["type"] = "function", ["name"] = named };
        }
        else if (choice.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            throw new InvalidRequestException("'tool_choice' must be a string or an object.", "tool_choice");
        if (mode is ToolChoiceMode.Required or ToolChoiceMode.Named && tools.Count == 0)
            throw new InvalidRequestException("'tool_choice' asks for a tool call but 'tools' is empty.", "tool_choice");
        return ToolCalling.Of(tools, mode, named, parallel);
    }

    /// <summary>Up to 16 string pairs (keys up to 64 characters, values up to 512), as OpenAI bounds them.</summary>
    private static JsonObject ReadMetadata(JsonElement metadata)
    {
        var o = new JsonObject();
        if (metadata.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return o;
        if (metadata.ValueKind != JsonValueKind.Object) throw new InvalidRequestException("'metadata' must be an object of strings.", "metadata");
        foreach (var p in metadata.EnumerateObject())
        {
            if (o.Count == MaxMetadataKeys) throw new InvalidRequestException($"'metadata' takes at most {MaxMetadataKeys} keys.", "metadata");
            if (p.Name.Length is 0 or > 64) throw new InvalidRequestException("'metadata' keys must be 1 to 64 characters.", "metadata");
            if (p.Value.ValueKind != JsonValueKind.String || p.Value.GetString()!.Length > 512)
                throw new InvalidRequestException($"'metadata.{p.Name}' must be a string of at most 512 characters.", $"metadata.{p.Name}");
            o[p.Name] = p.Value.GetString();
        }
        return o;
    }

    /// <summary>Fields clients send with their default values: accepted at those values, refused (400) at others.</summary>
    private static void AcceptDefaults(RequestReader r)
    {
        if (r.OptionalString("truncation") is { } truncation and not "disabled")
            throw new InvalidRequestException("'truncation' must be 'disabled'; a prompt past the context is refused, not cut.", "truncation");
        if (r.OptionalBool("background") == true) throw new InvalidRequestException("'background' responses are not supported.", "background");
        var reasoning = r.Get("reasoning");
        if (reasoning.ValueKind == JsonValueKind.Object && reasoning.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.Null))
            throw new InvalidRequestException("'reasoning' options are not supported by this model.", "reasoning");
        var include = r.Get("include");
        if (include.ValueKind == JsonValueKind.Array && include.GetArrayLength() > 0)
            throw new InvalidRequestException($"'include' value '{include[0]}' is not supported.", "include");
        if (r.OptionalString("service_tier") is { } tier and not ("auto" or "default"))
            throw new InvalidRequestException("'service_tier' must be 'auto' or 'default'.", "service_tier");
        r.OptionalString("prompt_cache_key");
        r.OptionalString("safety_identifier");
    }
}
