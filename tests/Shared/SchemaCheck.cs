using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Tests.Shared;

/// <summary>An independent JSON-schema validator for the subset constrained decoding supports (written separately from
/// the matcher, so that a test compares two implementations), and a seeded generator of random schemas in that subset.</summary>
public static class SchemaCheck
{
    public static bool Validates(JsonElement v, JsonElement s, JsonElement root, out string why)
    {
        why = "";
        if (s.ValueKind == JsonValueKind.True) return true;
        if (s.TryGetProperty("$ref", out var r))
        {
            var at = root;
            foreach (var part in r.GetString()!.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries)) at = at.GetProperty(part);
            return Validates(v, at, root, out why);
        }
        if (s.TryGetProperty("const", out var c))
            return JsonNode.DeepEquals(JsonNode.Parse(v.GetRawText()), JsonNode.Parse(c.GetRawText())) || Fail(out why, $"{v} is not const {c}");
        if (s.TryGetProperty("enum", out var e))
            return e.EnumerateArray().Any(x => JsonNode.DeepEquals(JsonNode.Parse(v.GetRawText()), JsonNode.Parse(x.GetRawText()))) || Fail(out why, $"{v} not in enum");
        foreach (var u in new[] { "anyOf", "oneOf" })
            if (s.TryGetProperty(u, out var alts))
            {
                int matches = alts.EnumerateArray().Count(a => Validates(v, a, root, out _));
                return (u == "anyOf" ? matches >= 1 : matches == 1) || Fail(out why, $"{v} matches {matches} of {u}");
            }
        if (s.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToArray() : [type.GetString()!];
            if (!types.Any(t => IsType(v, t))) return Fail(out why, $"{v} is not of type {type}");
        }
        switch (v.ValueKind)
        {
            case JsonValueKind.Object:
                var props = s.TryGetProperty("properties", out var p) ? p : default;
                if (s.TryGetProperty("required", out var req))
                    foreach (var name in req.EnumerateArray())
                        if (!v.TryGetProperty(name.GetString()!, out _)) return Fail(out why, $"missing {name}");
                var names = new HashSet<string>();
                foreach (var prop in v.EnumerateObject())
                {
                    // Declared properties appear once; free keys (no declared properties) may repeat, as JSON allows.
                    if (!names.Add(prop.Name) && props.ValueKind == JsonValueKind.Object) return Fail(out why, $"duplicate key {prop.Name}");
                    if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(prop.Name, out var ps))
                    {
                        if (!Validates(prop.Value, ps, root, out why)) return false;
                    }
                    else if (s.TryGetProperty("additionalProperties", out var ap))
                    {
                        if (ap.ValueKind == JsonValueKind.False) return Fail(out why, $"additional property {prop.Name}");
                        if (!Validates(prop.Value, ap, root, out why)) return false;
                    }
                }
                return true;
            case JsonValueKind.Array:
                int n = v.GetArrayLength();
                if (s.TryGetProperty("minItems", out var min) && n < min.GetInt32()) return Fail(out why, "too few items");
                if (s.TryGetProperty("maxItems", out var max) && n > max.GetInt32()) return Fail(out why, "too many items");
                if (s.TryGetProperty("items", out var items))
                    foreach (var item in v.EnumerateArray())
                        if (!Validates(item, items, root, out why)) return false;
                return true;
            case JsonValueKind.String:
                int len = v.GetString()!.EnumerateRunes().Count();
                if (s.TryGetProperty("minLength", out var minL) && len < minL.GetInt32()) return Fail(out why, "string too short");
                if (s.TryGetProperty("maxLength", out var maxL) && len > maxL.GetInt32()) return Fail(out why, "string too long");
                return true;
            default:
                return true;
        }
    }

    private static bool IsType(JsonElement v, string t) => t switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && decimal.TryParse(v.GetRawText(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => false,
    };

    private static bool Fail(out string why, string message)
    {
        why = message;
        return false;
    }

    /// <summary>A random schema of the supported subset, at most <paramref name="depth"/> levels deep.</summary>
    public static JsonObject RandomSchema(Random rng, int depth)
    {
        int pick = rng.Next(depth <= 0 ? 6 : 9);
        switch (pick)
        {
            case 0: return new JsonObject { ["type"] = "string" };
            case 1: return new JsonObject { ["type"] = "string", ["minLength"] = rng.Next(0, 3), ["maxLength"] = rng.Next(3, 8) };
            case 2: return new JsonObject { ["type"] = rng.Next(2) == 0 ? "number" : "integer" };
            case 3: return new JsonObject { ["type"] = "boolean" };
            case 4:
                var values = new JsonArray();
                foreach (var x in new JsonNode?[] { "red", "green", "blé", 7, 7.5, true, null, "a\"b" }.OrderBy(_ => rng.Next()).Take(rng.Next(1, 5)))
                    values.Add(x?.DeepClone());
                return new JsonObject { ["enum"] = values };
            case 5: return new JsonObject { ["type"] = new JsonArray("string", "null") };
            case 6 or 7:
                var props = new JsonObject();
                var required = new JsonArray();
                int count = rng.Next(0, 5);
                for (int i = 0; i < count; i++)
                {
                    string name = new[] { "name", "age", "tags", "é", "nested", "a b", "x\"y" }[i % 7] + (i >= 7 ? i.ToString() : "");
                    props[name] = RandomSchema(rng, depth - 1);
                    if (rng.Next(2) == 0) required.Add(name);
                }
                var o = new JsonObject { ["type"] = "object", ["properties"] = props, ["required"] = required };
                if (count == 0) o.Remove("properties");
                if (rng.Next(2) == 0) o["additionalProperties"] = false;
                return o;
            default:
                var a = new JsonObject { ["type"] = "array", ["items"] = RandomSchema(rng, depth - 1) };
                if (rng.Next(2) == 0) { a["minItems"] = rng.Next(0, 2); a["maxItems"] = rng.Next(2, 4); }
                return a;
        }
    }
}
