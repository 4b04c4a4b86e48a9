using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>Typed, checked access to one JSON file: every wrong type or missing field becomes a
/// <see cref="TokenizerFormatException"/> that names the file and the JSON path.</summary>
internal sealed class JsonFile(string path)
{
    /// <summary>Largest tokenizer file accepted; real ones are well under 50 MB.</summary>
    public const long MaxBytes = 512L * 1024 * 1024;

    public string Path { get; } = path;

    public JsonDocument Parse()
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(Path);
            if (!info.Exists) throw Fail("file not found");
            if (info.Length > MaxBytes) throw Fail($"file is {info.Length} bytes, more than the {MaxBytes} accepted");
            bytes = File.ReadAllBytes(Path);
        }
        catch (IOException ex) { throw new TokenizerFormatException(Path, "cannot be read: " + ex.Message, ex); }
        catch (UnauthorizedAccessException ex) { throw new TokenizerFormatException(Path, "cannot be read: " + ex.Message, ex); }
        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException ex) { throw new TokenizerFormatException(Path, "is not valid JSON: " + ex.Message, ex); }
    }

    public TokenizerFormatException Fail(string problem) => new(Path, problem);

    public TokenizerFormatException WrongType(string where, string expected, JsonElement actual) =>
        Fail($"'{where}' must be {expected}, found {Describe(actual)}");

    public JsonElement RequireObject(JsonElement element, string where) =>
        element.ValueKind == JsonValueKind.Object ? element : throw WrongType(where, "an object", element);

    /// <summary>The property, or null when it is missing or JSON null.</summary>
    public static JsonElement? Optional(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value : null;

    public JsonElement Required(JsonElement obj, string name, string where) =>
        Optional(obj, name) ?? throw Fail($"'{Join(where, name)}' is missing");

    /// <summary>The JSON path of a member: "model.vocab", or just "model" at the root ("$").</summary>
    public static string Join(string where, string name) => where == "$" ? name : $"{where}.{name}";

    public JsonElement? OptionalObject(JsonElement obj, string name, string where)
    {
        var value = Optional(obj, name);
        return value is null ? null : RequireObject(value.Value, Join(where, name));
    }

    public JsonElement RequiredArray(JsonElement obj, string name, string where)
    {
        var value = Required(obj, name, where);
        return value.ValueKind == JsonValueKind.Array ? value : throw WrongType(Join(where, name), "an array", value);
    }

    public string RequiredString(JsonElement obj, string name, string where) =>
        AsString(Required(obj, name, where), Join(where, name));

    public string? OptionalString(JsonElement obj, string name, string where)
    {
        var value = Optional(obj, name);
        return value is null ? null : AsString(value.Value, Join(where, name));
    }

    public bool OptionalBool(JsonElement obj, string name, string where, bool fallback)
    {
        var value = Optional(obj, name);
        if (value is null) return fallback;
        return value.Value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(Join(where, name), "true or false", value.Value),
        };
    }

    public int? OptionalInt(JsonElement obj, string name, string where)
    {
        var value = Optional(obj, name);
        return value is null ? null : AsInt(value.Value, Join(where, name));
    }

    public string AsString(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw WrongType(where, "a string", value);

    public int AsInt(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n)
            ? n : throw WrongType(where, "a 32-bit integer", value);

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => value.ValueKind.ToString(),
    };
}
