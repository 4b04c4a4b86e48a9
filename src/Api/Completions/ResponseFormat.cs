using System.Text.Json;
using System.Text.RegularExpressions;
using Loom.Inference.Constrained;

namespace Loom.Api.Completions;

/// <summary>
/// OpenAI's <c>response_format</c> (chat and text completions) and the Responses API's <c>text.format</c>: <c>text</c>,
/// <c>json_object</c> (any JSON object) or <c>json_schema</c> (a value valid against the schema), enforced by
/// constrained decoding. A schema keyword the decoder cannot enforce is a 400 naming it, never ignored.
/// </summary>
internal static partial class ResponseFormat
{
    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex NamePattern();

    /// <summary>The grammar of <c>response_format</c> (<paramref name="param"/> names it in errors), or null for text.</summary>
    public static JsonGrammar? Read(JsonElement format, string param)
    {
        if (format.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw new InvalidRequestException($"'{param}' must be an object with a 'type' of 'text', 'json_object' or 'json_schema'.", param);
        switch (type.GetString())
        {
            case "text":
                Only(format, param, "type");
                return null;
            case "json_object":
                Only(format, param, "type");
                return JsonGrammar.ForAnyObject();
            case "json_schema":
                // Chat completions nest the schema ({type, json_schema: {name, schema, strict}}); the Responses API does not.
                var spec = format.TryGetProperty("json_schema", out var nested) ? nested : format;
                string where = spec.Equals(format) ? param : $"{param}.json_schema";
                if (!spec.Equals(format)) Only(format, param, "type", "json_schema");
                if (spec.ValueKind != JsonValueKind.Object)
                    throw new InvalidRequestException($"'{where}' must be an object with 'name' and 'schema'.", where);
                Only(spec, where, "type", "name", "description", "schema", "strict");
                if (!spec.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !NamePattern().IsMatch(name.GetString()!))
                    throw new InvalidRequestException($"'{where}.name' must be 1 to 64 letters, digits, underscores or dashes.", $"{where}.name");
                if (spec.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw new InvalidRequestException($"'{where}.strict' must be a boolean.", $"{where}.strict");
                if (!spec.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
                    throw new InvalidRequestException($"'{where}.schema' must be a JSON schema object.", $"{where}.schema");
                try { return JsonGrammar.FromSchema(schema); }
                catch (GrammarNotSupportedException e)
                {
                    throw new InvalidRequestException($"Invalid schema for response_format '{name.GetString()}': {e.Message} (at '{e.Path}').", $"{where}.schema", "invalid_json_schema");
                }
            default:
                throw new InvalidRequestException($"'{param}.type' must be 'text', 'json_object' or 'json_schema'; got '{type.GetString()}'.", $"{param}.type");
        }
    }

    private static void Only(JsonElement o, string param, params string[] fields)
    {
        foreach (var p in o.EnumerateObject())
            if (Array.IndexOf(fields, p.Name) < 0)
                throw new InvalidRequestException($"Unrecognized field '{p.Name}' in '{param}'.", $"{param}.{p.Name}");
    }
}
