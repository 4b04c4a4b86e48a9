using System.Text.Json;

namespace Loom.Api.Completions;

/// <summary>A 400 with the offending parameter, raised while reading a request body.</summary>
public sealed class InvalidRequestException(string message, string? param, string? code = null) : Exception(message)
{
    public string? Param { get; } = param;
    public string? Code { get; } = code;
}

/// <summary>
/// Typed reads from a JSON request object with OpenAI-style errors that name the parameter. Tracks which
/// fields were read so unknown fields can be refused, as OpenAI does.
/// </summary>
internal sealed class RequestReader(JsonElement root)
{
    private readonly HashSet<string> _known = new(StringComparer.Ordinal);

    public static RequestReader Parse(JsonDocument doc) =>
        doc.RootElement.ValueKind == JsonValueKind.Object
            ? new RequestReader(doc.RootElement)
            : throw new InvalidRequestException("The request body must be a JSON object.", null);

    public JsonElement Root => root;

    public bool Has(string name)
    {
        _known.Add(name);
        return root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;
    }

    public JsonElement Get(string name)
    {
        _known.Add(name);
        return root.TryGetProperty(name, out var v) ? v : default;
    }

    public string RequiredString(string name)
    {
        var v = Get(name);
        if (v.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) throw new InvalidRequestException($"Missing required parameter: '{name}'.", name);
        if (v.ValueKind != JsonValueKind.String) throw new InvalidRequestException($"'{name}' must be a string.", name);
        return v.GetString()!;
    }

    public string? OptionalString(string name)
    {
        var v = Get(name);
        if (v.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InvalidRequestException($"'{name}' must be a string.", name);
    }

    public bool? OptionalBool(string name)
    {
        var v = Get(name);
        return v.ValueKind switch
        {
            JsonValueKind.Undefined or JsonValueKind.Null => null,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidRequestException($"'{name}' must be a boolean.", name),
        };
    }

    public double? OptionalNumber(string name, double min, double max)
    {
        var v = Get(name);
        if (v.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d))
            throw new InvalidRequestException($"'{name}' must be a number.", name);
        if (d < min || d > max) throw new InvalidRequestException($"'{name}' must be between {min} and {max}; got {d}.", name);
        return d;
    }

    public long? OptionalInteger(string name, long min, long max)
    {
        var v = Get(name);
        if (v.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var n))
            throw new InvalidRequestException($"'{name}' must be an integer.", name);
        if (n < min || n > max) throw new InvalidRequestException($"'{name}' must be between {min} and {max}; got {n}.", name);
        return n;
    }

    /// <summary>Refuses fields no reader asked for (OpenAI answers "Unrecognized request argument").</summary>
    public void RejectUnknown()
    {
        foreach (var p in root.EnumerateObject())
            if (!_known.Contains(p.Name))
                throw new InvalidRequestException($"Unrecognized request argument supplied: {p.Name}", p.Name);
    }
}
