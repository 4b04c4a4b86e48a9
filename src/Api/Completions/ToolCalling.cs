using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Loom.Inference.Constrained;
using Loom.Inference.Tokenization;

namespace Loom.Api.Completions;

/// <summary>A function the caller offers the model.</summary>
internal sealed record ToolSpec(string Name, string? Description, JsonElement Parameters);

internal enum ToolChoiceMode { None, Auto, Required, Named }

/// <summary>One call the model made (OpenAI's <c>tool_calls</c> item).</summary>
public sealed record ToolCallObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("function")] ToolCallFunction Function);

public sealed record ToolCallFunction(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("arguments")] string Arguments);

/// <summary>A streamed tool call: OpenAI's <c>delta.tool_calls</c> item. The first one of a call carries its id, type and
/// name (and empty arguments); later ones carry only the index and a fragment of the arguments.</summary>
public sealed record ToolCallDelta(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonPropertyName("type"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Type,
    [property: JsonPropertyName("function")] ToolCallFunctionDelta Function);

public sealed record ToolCallFunctionDelta(
    [property: JsonPropertyName("name"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    [property: JsonPropertyName("arguments")] string Arguments);

/// <summary>
/// Tool calling on chat completions (<c>tools</c>, <c>tool_choice</c>, <c>parallel_tool_calls</c>). The model is told
/// about the functions in the system prompt in one format for every chat template (the tool-call tags that Hermes and
/// Qwen 2.5 models are trained on): calls are written as <c>&lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;</c>
/// and results come back as <c>&lt;tool_response&gt;</c> blocks in a user turn. With <c>tool_choice: "auto"</c> the
/// text is free until the model opens a call; from the tag on, the call is decoded under the functions' parameter schemas
/// (lazy constrained decoding). With <c>"required"</c> or a named function the whole answer is decoded as calls.
/// </summary>
internal sealed partial class ToolCalling
{
    public const int MaxTools = 128;
    public const string OpenTag = "<tool_call>";
    public const string CloseTag = "</tool_call>";
    private static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex NamePattern();

    public IReadOnlyList<ToolSpec> Tools { get; private init; } = [];
    public ToolChoiceMode Mode { get; private init; } = ToolChoiceMode.None;
    public string? Named { get; private init; }
    public bool Parallel { get; private init; } = true;

    public bool Enabled => Mode != ToolChoiceMode.None && Tools.Count > 0;
    /// <summary>The answer is nothing but calls (decoded under the grammar from its first token).</summary>
    public bool Forced => Mode is ToolChoiceMode.Required or ToolChoiceMode.Named;

    public static ToolCalling Read(RequestReader r)
    {
        var toolsElement = r.Get("tools");
        var choice = r.Get("tool_choice");
        var parallel = r.OptionalBool("parallel_tool_calls") ?? true;
        var tools = new List<ToolSpec>();
        if (toolsElement.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
        {
            if (toolsElement.ValueKind != JsonValueKind.Array || toolsElement.GetArrayLength() > MaxTools)
                throw new InvalidRequestException($"'tools' must be an array of at most {MaxTools} tools.", "tools");
            int i = 0;
            foreach (var t in toolsElement.EnumerateArray())
            {
                string at = $"tools[{i++}]";
                if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("type", out var type) || type.GetString() != "function"
                    || !t.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object)
                    throw new InvalidRequestException($"'{at}' must be {{\"type\": \"function\", \"function\": {{...}}}}.", at);
                tools.Add(ReadTool(f, $"{at}.function", tools));
            }
        }

        var mode = tools.Count > 0 ? ToolChoiceMode.Auto : ToolChoiceMode.None;
        string? named = null;
        if (choice.ValueKind == JsonValueKind.String)
        {
            mode = ChoiceMode(choice.GetString());
        }
        else if (choice.ValueKind == JsonValueKind.Object)
        {
            if (!choice.TryGetProperty("function", out var f) || !f.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
                throw new InvalidRequestException("'tool_choice' must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice");
            named = n.GetString()!;
            if (!tools.Any(t => t.Name == named)) throw new InvalidRequestException($"'tool_choice' names '{named}', which is not among 'tools'.", "tool_choice");
            mode = ToolChoiceMode.Named;
        }
        else if (choice.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            throw new InvalidRequestException("'tool_choice' must be a string or an object.", "tool_choice");
        if (mode is ToolChoiceMode.Required or ToolChoiceMode.Named && tools.Count == 0)
            throw new InvalidRequestException("'tool_choice' asks for a tool call but 'tools' is empty.", "tool_choice");
        return new ToolCalling { Tools = tools, Mode = mode, Named = named, Parallel = parallel };
    }

    /// <summary>One function's <c>name</c>, <c>description</c> and <c>parameters</c> (a schema the decoder can enforce),
    /// read from <paramref name="f"/>; <paramref name="at"/> names it in errors.</summary>
    public static ToolSpec ReadTool(JsonElement f, string at, IReadOnlyList<ToolSpec> earlier)
    {
        if (!f.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !NamePattern().IsMatch(name.GetString()!))
            throw new InvalidRequestException($"'{at}.name' must be 1 to 64 letters, digits, underscores or dashes.", $"{at}.name");
        if (earlier.Any(x => x.Name == name.GetString()))
            throw new InvalidRequestException($"Two tools are named '{name.GetString()}'.", $"{at}.name");
        var parameters = f.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null ? p.Clone()
            : JsonDocument.Parse("""{"type":"object","properties":{}}""").RootElement;
        if (parameters.ValueKind != JsonValueKind.Object)
            throw new InvalidRequestException($"'{at}.parameters' must be a JSON schema object.", $"{at}.parameters");
        try { JsonGrammar.FromSchema(parameters); }
        catch (GrammarNotSupportedException e)
        {
            throw new InvalidRequestException($"Invalid schema for function '{name.GetString()}': {e.Message} (at '{e.Path}').", $"{at}.parameters", "invalid_function_parameters");
        }
        string? description = f.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        return new ToolSpec(name.GetString()!, description, parameters);
    }

    /// <summary>Tool calling from already validated parts (the Responses API reads its own request shape).</summary>
    public static ToolCalling Of(IReadOnlyList<ToolSpec> tools, ToolChoiceMode mode, string? named, bool parallel) =>
        new() { Tools = tools, Mode = tools.Count == 0 ? ToolChoiceMode.None : mode, Named = named, Parallel = parallel };

    /// <summary>The grammar the calls are decoded under, and the trigger that starts it (null: from the first token).</summary>
    public (JsonGrammar Grammar, string? Trigger)? Constraint()
    {
        if (!Enabled) return null;
        var offered = Mode == ToolChoiceMode.Named ? Tools.Where(t => t.Name == Named) : Tools;
        var grammar = JsonGrammar.ForToolCalls([.. offered.Select(t => (t.Name, t.Parameters))], several: Forced && Parallel && Mode != ToolChoiceMode.Named);
        return (grammar, Forced ? null : OpenTag);
    }

    /// <summary>The system-prompt section that describes the functions and the call format.</summary>
    public string SystemSection()
    {
        var sb = new StringBuilder();
        sb.Append("# Tools\n\nYou can call functions to help answer. Their signatures, one JSON object per line:\n<tools>\n");
        foreach (var t in Tools)
            sb.Append(JsonSerializer.Serialize(new { type = "function", function = new { name = t.Name, description = t.Description, parameters = t.Parameters } }, Compact)).Append('\n');
        sb.Append("</tools>\n\nTo call a function, write a JSON object with its name and arguments between tags:\n")
          .Append(OpenTag).Append("\n{\"name\": <function name>, \"arguments\": <arguments object>}\n").Append(CloseTag);
        if (Forced) sb.Append("\nAnswer with function calls only.");
        return sb.ToString();
    }

    /// <summary>The messages as the chat template sees them: the tool section added to the system prompt, assistant calls
    /// written in the call format, tool results as user turns.</summary>
    public IReadOnlyList<ChatMessage> Render(IReadOnlyList<ChatMessage> messages)
    {
        if (!Enabled) return messages;
        var list = messages.ToList();
        int system = list.FindIndex(m => m.Role == "system");
        if (system >= 0) list[system] = list[system] with { Content = list[system].Content + "\n\n" + SystemSection() };
        else list.Insert(0, new ChatMessage("system", SystemSection()));
        return list;
    }

    /// <summary>The call format for an assistant message's earlier calls.</summary>
    public static string WriteCalls(IEnumerable<(string Name, string Arguments)> calls) =>
        string.Join("\n", calls.Select(c => $"{OpenTag}\n{{\"name\": {JsonSerializer.Serialize(c.Name, Compact)}, \"arguments\": {c.Arguments}}}\n{CloseTag}"));

    /// <summary>A tool result in the format the model reads.</summary>
    public static string WriteResult(string content) => $"<tool_response>\n{content}\n</tool_response>";

    /// <summary>Splits the model's output into text and calls. Forced: the output is the calls' JSON (one object, or an array).
    /// Auto: text, and each call that follows an opening tag and parses (a broken one stays in the text).</summary>
    public (string? Content, List<ToolCallObject> Calls) Parse(string output)
    {
        var calls = new List<ToolCallObject>();
        if (Forced)
        {
            try
            {
                var root = JsonDocument.Parse(output).RootElement;
                foreach (var call in root.ValueKind == JsonValueKind.Array ? root.EnumerateArray().ToArray() : [root]) calls.Add(ToCall(call));
                return (null, calls);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return (output, calls); // cut short by max_tokens: the partial text is all there is
            }
        }
        var text = new StringBuilder();
        int pos = 0;
        while (pos < output.Length)
        {
            int open = output.IndexOf(OpenTag, pos, StringComparison.Ordinal);
            if (open < 0) { text.Append(output, pos, output.Length - pos); break; }
            text.Append(output, pos, open - pos);
            int start = open + OpenTag.Length;
            var bytes = Encoding.UTF8.GetBytes(output[start..]);
            var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { AllowTrailingCommas = false });
            try
            {
                using var doc = JsonDocument.ParseValue(ref reader);
                calls.Add(ToCall(doc.RootElement));
                int consumed = Encoding.UTF8.GetCharCount(bytes, 0, (int)reader.BytesConsumed);
                pos = start + consumed;
                int close = output.IndexOf(CloseTag, pos, StringComparison.Ordinal);
                if (close >= 0 && string.IsNullOrWhiteSpace(output[pos..close])) pos = close + CloseTag.Length;
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                text.Append(output, open, output.Length - open);
                break;
            }
        }
        var content = text.ToString().Trim();
        return (content.Length == 0 && calls.Count > 0 ? null : content, calls);
    }

    private static ToolCallObject ToCall(JsonElement call) => new(Sse.NewId("call_"), "function",
        new ToolCallFunction(call.GetProperty("name").GetString()!, call.GetProperty("arguments").GetRawText()));

    /// <summary>A string <c>tool_choice</c> (chat completions and responses): none, auto or required.</summary>
    internal static ToolChoiceMode ChoiceMode(string? value) => value switch
    {
        "none" => ToolChoiceMode.None,
        "auto" => ToolChoiceMode.Auto,
        "required" => ToolChoiceMode.Required,
        var other => throw new InvalidRequestException($"'tool_choice' must be 'none', 'auto', 'required' or a named function; got '{other}'.", "tool_choice"),
    };
}
