using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Loom.Inference.Constrained;

/// <summary>A JSON schema keyword or shape that constrained decoding does not support; <see cref="Path"/> points at it
/// inside the schema (JSON pointer style, "#/properties/age/minimum").</summary>
public sealed class GrammarNotSupportedException(string message, string path) : Exception(message)
{
    public string Path { get; } = path;
}

/// <summary>What one schema node allows. Nodes refer to each other by index into <see cref="JsonGrammar.Nodes"/>.</summary>
public enum GrammarNodeKind : byte { Any, Object, Array, String, Number, Integer, Literals, Union, Tagged }

/// <summary>One object property: its JSON-encoded name without the opening quote (so it ends with the closing quote),
/// the node of its value, whether it must appear.</summary>
public sealed record GrammarProperty(string Name, byte[] KeyTail, int Value, bool Required);

/// <summary>A compiled schema node. Fields not used by a kind keep their defaults.</summary>
public sealed record GrammarNode(GrammarNodeKind Kind)
{
    /// <summary>Object: declared properties, generated in this order (each optional one may be left out).</summary>
    public GrammarProperty[] Properties { get; init; } = [];
    /// <summary>Object without declared properties: the node of every value under a free key (Any when unconstrained).</summary>
    public int FreeValue { get; init; } = -1;
    /// <summary>Array: the node of every item.</summary>
    public int Items { get; init; } = -1;
    public int MinItems { get; init; }
    public int MaxItems { get; init; } = int.MaxValue;
    /// <summary>String: length bounds in characters (an escape counts as one).</summary>
    public int MinLength { get; init; }
    public int MaxLength { get; init; } = int.MaxValue;
    /// <summary>Literals: the compact JSON text of each allowed value (enum, const, true/false/null). Tagged: the text
    /// that opens each alternative (an object up to one property's value, which then follows, and a closing brace).</summary>
    public byte[][] Literals { get; init; } = [];
    /// <summary>Union: alternatives, told apart by the first byte of the value (see <see cref="FirstBytes"/>). Tagged:
    /// the value node that follows each literal prefix.</summary>
    public int[] Alternatives { get; init; } = [];

    public bool HasStringBounds => MinLength > 0 || MaxLength != int.MaxValue;
    public bool HasItemBounds => MinItems > 0 || MaxItems != int.MaxValue;
}

/// <summary>
/// A JSON schema compiled for constrained decoding: a graph of <see cref="GrammarNode"/>s that a <see cref="JsonMatcher"/>
/// walks byte by byte. Supported: type (one or a list), properties / required / additionalProperties, items /
/// minItems / maxItems, enum, const, minLength / maxLength, anyOf (and oneOf) whose alternatives start with different
/// bytes, $ref into $defs or definitions (recursion included), and the annotations (title, description, default,
/// examples, $schema, $id, $comment, strict). Anything else (pattern, format, minimum, allOf, not, if/then, ...) is
/// refused with a <see cref="GrammarNotSupportedException"/>, because silently not enforcing it would return output
/// that does not validate.
/// </summary>
public sealed class JsonGrammar
{
    public const int MaxNodes = 1024;
    public const int MaxProperties = 64;
    public const int MaxLiterals = 64;
    public const int MaxLiteralBytes = 1024;

    private static readonly HashSet<string> Annotations =
        ["title", "description", "default", "examples", "$schema", "$id", "$comment", "strict", "$defs", "definitions", "name"];
    private static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly List<GrammarNode?> _nodes = [];
    private readonly Dictionary<string, int> _refs = new(StringComparer.Ordinal);
    private readonly Dictionary<int, JsonElement> _pending = []; // references still being compiled, with their schema
    private readonly JsonElement _root;

    public IReadOnlyList<GrammarNode> Nodes => _nodes!;
    public int Root { get; private set; }
    /// <summary>Nodes an unconstrained value (<see cref="GrammarNodeKind.Any"/>) turns into once its first byte is seen.</summary>
    public int AnyObject { get; }
    public int AnyArray { get; }
    public int AnyString { get; }
    public int AnyNumber { get; }
    public int AnyLiteral { get; }

    private JsonGrammar(JsonElement root, bool anyObject)
    {
        _root = root;
        int any = Add(new GrammarNode(GrammarNodeKind.Any));
        AnyObject = Add(new GrammarNode(GrammarNodeKind.Object) { FreeValue = any });
        AnyArray = Add(new GrammarNode(GrammarNodeKind.Array) { Items = any });
        AnyString = Add(new GrammarNode(GrammarNodeKind.String));
        AnyNumber = Add(new GrammarNode(GrammarNodeKind.Number));
        AnyLiteral = Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()] });
        Root = anyObject ? AnyObject : Compile(root, "#");
    }

    /// <summary>Any JSON object (OpenAI's <c>response_format: {type: "json_object"}</c>).</summary>
    public static JsonGrammar ForAnyObject() => new(default, anyObject: true);

    /// <summary>A function call, <c>{"name": "f", "arguments": {...}}</c> with the arguments valid against f's parameter
    /// schema (the name picks the schema); with <paramref name="several"/> a non-empty array of them.</summary>
    public static JsonGrammar ForToolCalls(IReadOnlyList<(string Name, JsonElement Parameters)> tools, bool several)
    {
        var g = new JsonGrammar(default, anyObject: true);
        var prefixes = new List<byte[]>();
        var values = new List<int>();
        foreach (var (name, parameters) in tools)
        {
            var encoded = JsonSerializer.Serialize(name, Compact);
            prefixes.Add(Encoding.UTF8.GetBytes($"{{\"name\": {encoded}, \"arguments\": "));
            values.Add(parameters.ValueKind == JsonValueKind.Undefined ? g.AnyObject : g.Compile(parameters.Clone(), $"#/{Escape(name)}"));
        }
        int call = g.Add(new GrammarNode(GrammarNodeKind.Tagged) { Literals = [.. prefixes], Alternatives = [.. values] });
        g.Root = several ? g.Add(new GrammarNode(GrammarNodeKind.Array) { Items = call, MinItems = 1 }) : call;
        return g;
    }

    /// <summary>Compiles a JSON schema. Throws <see cref="GrammarNotSupportedException"/> naming the first unsupported part.</summary>
    public static JsonGrammar FromSchema(JsonElement schema) => new(schema.Clone(), anyObject: false);

    private int Add(GrammarNode node)
    {
        if (_nodes.Count >= MaxNodes) throw new GrammarNotSupportedException($"The schema is too large: more than {MaxNodes} nodes.", "#");
        _nodes.Add(node);
        return _nodes.Count - 1;
    }

    private int Compile(JsonElement s, string path)
    {
        if (s.ValueKind == JsonValueKind.True) return Add(new GrammarNode(GrammarNodeKind.Any));
        if (s.ValueKind != JsonValueKind.Object) throw new GrammarNotSupportedException("A schema must be an object (or true).", path);
        foreach (var p in s.EnumerateObject())
            if (!Annotations.Contains(p.Name) && !Known.Contains(p.Name))
                throw new GrammarNotSupportedException($"The schema keyword '{p.Name}' is not supported for constrained output.", $"{path}/{p.Name}");

        if (s.TryGetProperty("$ref", out var r)) return Reference(s, r, path);
        if (s.TryGetProperty("const", out var c)) return Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = [Literal(c, $"{path}/const")] });
        if (s.TryGetProperty("enum", out var e)) return Enum(e, $"{path}/enum");
        foreach (var union in new[] { "anyOf", "oneOf" })
            if (s.TryGetProperty(union, out var u)) return Union(u, $"{path}/{union}");

        if (!s.TryGetProperty("type", out var type))
        {
            if (s.TryGetProperty("properties", out _)) return Object(s, path);
            if (s.TryGetProperty("items", out _)) return Array(s, path);
            return Add(new GrammarNode(GrammarNodeKind.Any));
        }
        if (type.ValueKind == JsonValueKind.String) return Typed(s, type.GetString()!, path);
        if (type.ValueKind != JsonValueKind.Array || type.GetArrayLength() == 0)
            throw new GrammarNotSupportedException("'type' must be a string or a non-empty array of strings.", $"{path}/type");
        var alternatives = new List<int>();
        foreach (var t in type.EnumerateArray())
            alternatives.Add(t.ValueKind == JsonValueKind.String ? Typed(s, t.GetString()!, path)
                : throw new GrammarNotSupportedException("'type' must be a string or a non-empty array of strings.", $"{path}/type"));
        return alternatives.Count == 1 ? alternatives[0] : MakeUnion(alternatives, $"{path}/type");
    }

    private static readonly HashSet<string> Known =
        ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "minLength", "maxLength", "anyOf", "oneOf", "$ref"];

    private int Typed(JsonElement s, string type, string path) => type switch
    {
        "object" => Object(s, path),
        "array" => Array(s, path),
        "string" => Add(new GrammarNode(GrammarNodeKind.String)
        {
            MinLength = Bound(s, "minLength", 0, path), MaxLength = Bound(s, "maxLength", int.MaxValue, path),
        }),
        "number" => Add(new GrammarNode(GrammarNodeKind.Number)),
        "integer" => Add(new GrammarNode(GrammarNodeKind.Integer)),
        "boolean" => Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = ["true"u8.ToArray(), "false"u8.ToArray()] }),
        "null" => Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = ["null"u8.ToArray()] }),
        _ => throw new GrammarNotSupportedException($"Unknown type '{type}'.", $"{path}/type"),
    };

    private static int Bound(JsonElement s, string name, int otherwise, string path)
    {
        if (!s.TryGetProperty(name, out var v)) return otherwise;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n >= 0 ? n
            : throw new GrammarNotSupportedException($"'{name}' must be a non-negative integer.", $"{path}/{name}");
    }

    private int Object(JsonElement s, string path)
    {
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (s.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array) throw new GrammarNotSupportedException("'required' must be an array of names.", $"{path}/required");
            foreach (var n in req.EnumerateArray())
                required.Add(n.ValueKind == JsonValueKind.String ? n.GetString()! : throw new GrammarNotSupportedException("'required' must be an array of names.", $"{path}/required"));
        }
        int index = Add(new GrammarNode(GrammarNodeKind.Object)); // placed first so that recursion through $ref finds it
        var props = new List<GrammarProperty>();
        if (s.TryGetProperty("properties", out var properties))
        {
            if (properties.ValueKind != JsonValueKind.Object) throw new GrammarNotSupportedException("'properties' must be an object.", $"{path}/properties");
            foreach (var p in properties.EnumerateObject())
            {
                if (props.Count == MaxProperties) throw new GrammarNotSupportedException($"At most {MaxProperties} properties per object are supported.", $"{path}/properties");
                var key = JsonSerializer.SerializeToUtf8Bytes(p.Name, Compact);
                props.Add(new GrammarProperty(p.Name, key[1..], Compile(p.Value, $"{path}/properties/{Escape(p.Name)}"), required.Contains(p.Name)));
            }
        }
        foreach (var name in required)
            if (!props.Any(p => p.Name == name))
                throw new GrammarNotSupportedException($"'{name}' is required but not among 'properties'.", $"{path}/required");

        int free = -1;
        var additional = s.TryGetProperty("additionalProperties", out var a) ? a : default;
        if (props.Count == 0)
        {
            // No declared properties: free keys, each value under the additionalProperties schema (any value when absent or true).
            if (additional.ValueKind == JsonValueKind.False) free = -1;
            else free = additional.ValueKind is JsonValueKind.Undefined or JsonValueKind.True
                ? Add(new GrammarNode(GrammarNodeKind.Any))
                : Compile(additional, $"{path}/additionalProperties");
        }
        else if (additional.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.True or JsonValueKind.False))
        {
            // Declared properties are generated and nothing else, which every additionalProperties value allows.
            Compile(additional, $"{path}/additionalProperties");
        }
        _nodes[index] = new GrammarNode(GrammarNodeKind.Object) { Properties = [.. props], FreeValue = free };
        return index;
    }

    private int Array(JsonElement s, string path)
    {
        int index = Add(new GrammarNode(GrammarNodeKind.Array));
        int items = s.TryGetProperty("items", out var i) ? Compile(i, $"{path}/items") : Add(new GrammarNode(GrammarNodeKind.Any));
        int min = Bound(s, "minItems", 0, path), max = Bound(s, "maxItems", int.MaxValue, path);
        if (min > max) throw new GrammarNotSupportedException("'minItems' is larger than 'maxItems'.", $"{path}/minItems");
        _nodes[index] = new GrammarNode(GrammarNodeKind.Array) { Items = items, MinItems = min, MaxItems = max };
        return index;
    }

    private int Enum(JsonElement e, string path)
    {
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() is 0 or > MaxLiterals)
            throw new GrammarNotSupportedException($"'enum' must be an array of 1 to {MaxLiterals} values.", path);
        var literals = new List<byte[]>();
        int i = 0;
        foreach (var v in e.EnumerateArray())
        {
            var bytes = Literal(v, $"{path}/{i++}");
            if (!literals.Any(l => l.AsSpan().SequenceEqual(bytes))) literals.Add(bytes);
        }
        return Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = [.. literals] });
    }

    private static byte[] Literal(JsonElement v, string path)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(v, Compact);
        return bytes.Length <= MaxLiteralBytes ? bytes
            : throw new GrammarNotSupportedException($"A constant value of at most {MaxLiteralBytes} bytes is supported.", path);
    }

    private int Union(JsonElement u, string path)
    {
        if (u.ValueKind != JsonValueKind.Array || u.GetArrayLength() == 0)
            throw new GrammarNotSupportedException("A union must be a non-empty array of schemas.", path);
        var alternatives = new List<int>();
        int i = 0;
        foreach (var a in u.EnumerateArray()) alternatives.Add(Compile(a, $"{path}/{i++}"));
        return alternatives.Count == 1 ? alternatives[0] : MakeUnion(alternatives, path);
    }

    /// <summary>A union whose alternatives start with different bytes, so the first byte picks one (no backtracking).
    /// Literal alternatives are merged into one literal set.</summary>
    private int MakeUnion(List<int> alternatives, string path)
    {
        var flat = new List<int>();
        var literals = new List<byte[]>();
        foreach (var a in alternatives)
        {
            var node = Resolve(a);
            if (node.Kind == GrammarNodeKind.Union) flat.AddRange(node.Alternatives);
            else if (node.Kind == GrammarNodeKind.Literals) literals.AddRange(node.Literals);
            else flat.Add(a);
        }
        if (literals.Count > 0) flat.Add(Add(new GrammarNode(GrammarNodeKind.Literals) { Literals = [.. literals] }));
        var seen = new bool[256];
        foreach (var a in flat)
            foreach (var b in FirstBytes(a))
            {
                if (seen[b]) throw new GrammarNotSupportedException(
                    "The alternatives of this union can start the same way (e.g. two object schemas); only unions of different types are supported.", path);
                seen[b] = true;
            }
        return flat.Count == 1 ? flat[0] : Add(new GrammarNode(GrammarNodeKind.Union) { Alternatives = [.. flat] });
    }

    private GrammarNode Resolve(int index) => _nodes[index] ?? throw new GrammarNotSupportedException("A union may not refer to itself.", "#");

    /// <summary>The bytes a value of the node can start with.</summary>
    public IEnumerable<byte> FirstBytes(int index)
    {
        if (_pending.TryGetValue(index, out var schema)) return FirstBytesOf(schema, 0);
        var node = Resolve(index);
        return node.Kind switch
        {
            GrammarNodeKind.Object => [(byte)'{'],
            GrammarNodeKind.Array => [(byte)'['],
            GrammarNodeKind.String => [(byte)'"'],
            GrammarNodeKind.Number or GrammarNodeKind.Integer => "-0123456789"u8.ToArray(),
            GrammarNodeKind.Literals or GrammarNodeKind.Tagged => node.Literals.Select(l => l[0]).Distinct().ToArray(),
            GrammarNodeKind.Union => node.Alternatives.SelectMany(FirstBytes).ToArray(),
            _ => "{[\"-0123456789tfn"u8.ToArray(),
        };
    }

    /// <summary>First bytes read from the schema itself, for a reference whose node is still being compiled.</summary>
    private IEnumerable<byte> FirstBytesOf(JsonElement s, int depth)
    {
        byte[] any = "{[\"-0123456789tfn"u8.ToArray();
        if (depth > 16 || s.ValueKind != JsonValueKind.Object) return any;
        if (s.TryGetProperty("$ref", out var r) && r.ValueKind == JsonValueKind.String && _refs.TryGetValue(r.GetString()!, out int target))
            return _pending.TryGetValue(target, out var t) ? FirstBytesOf(t, depth + 1) : FirstBytes(target);
        if (s.TryGetProperty("const", out var c)) return [JsonSerializer.SerializeToUtf8Bytes(c, Compact)[0]];
        if (s.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array)
            return e.EnumerateArray().Select(v => JsonSerializer.SerializeToUtf8Bytes(v, Compact)[0]).Distinct().ToArray();
        foreach (var union in new[] { "anyOf", "oneOf" })
            if (s.TryGetProperty(union, out var u) && u.ValueKind == JsonValueKind.Array)
                return u.EnumerateArray().SelectMany(a => FirstBytesOf(a, depth + 1)).Distinct().ToArray();
        if (!s.TryGetProperty("type", out var type)) return s.TryGetProperty("properties", out _) ? [(byte)'{'] : any;
        var types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()).ToArray() : [type.GetString()];
        return types.SelectMany(t => t switch
        {
            "object" => "{"u8.ToArray(), "array" => "["u8.ToArray(), "string" => "\""u8.ToArray(),
            "number" or "integer" => "-0123456789"u8.ToArray(), "boolean" => "tf"u8.ToArray(), "null" => "n"u8.ToArray(), _ => any,
        }).Distinct().ToArray();
    }

    private int Reference(JsonElement s, JsonElement r, string path)
    {
        foreach (var p in s.EnumerateObject())
            if (p.Name != "$ref" && !Annotations.Contains(p.Name))
                throw new GrammarNotSupportedException($"'{p.Name}' beside '$ref' is not supported.", $"{path}/{p.Name}");
        var target = r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
        if (_refs.TryGetValue(target, out int known)) return known;
        JsonElement at = _root;
        if (target != "#")
        {
            if (!target.StartsWith("#/", StringComparison.Ordinal))
                throw new GrammarNotSupportedException($"Only local references ('#/$defs/...') are supported, not '{target}'.", $"{path}/$ref");
            foreach (var part in target[2..].Split('/'))
            {
                var name = part.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (at.ValueKind != JsonValueKind.Object || !at.TryGetProperty(name, out at))
                    throw new GrammarNotSupportedException($"The reference '{target}' points at nothing.", $"{path}/$ref");
            }
        }
        // A placeholder Any node first, so that a recursive reference compiles to an index; then filled in.
        int index = Add(new GrammarNode(GrammarNodeKind.Any));
        _refs[target] = index;
        _pending[index] = at;
        int compiled = Compile(at, target);
        _pending.Remove(index);
        _nodes[index] = new GrammarNode(GrammarNodeKind.Union) { Alternatives = [compiled] };
        return index;
    }

    private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    /// <summary>A short description of the node graph (tests and diagnostics).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < _nodes.Count; i++) sb.Append(i).Append(": ").Append(_nodes[i]?.Kind).Append('\n');
        return sb.ToString();
    }
}
