using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Inference.Formats;

/// <summary>The supported subset of PEFT's adapter_config.json for a LoRA adapter.</summary>
public sealed record PeftAdapterConfig
{
    public const string FileName = "adapter_config.json";

    public required int Rank { get; init; }
    public required double Alpha { get; init; }
    public required IReadOnlyList<LoraTarget> Targets { get; init; }
    public bool UseRsLora { get; init; }
    public string? BaseModelNameOrPath { get; init; }
    /// <summary>Layers that carry the adapter; null means every layer.</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }

    /// <summary>lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA.</summary>
    public float Scale => (float)(UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank);

    public bool AppliesToLayer(int layer) => LayersToTransform is null || LayersToTransform.Contains(layer);

    /// <summary>Parses and checks the config. <paramref name="maxRank"/>: ranks above it are refused.</summary>
    public static PeftAdapterConfig Parse(string file, string json, int maxRank)
    {
        JsonNode? root;
        try
        {
            using (var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 }))
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new AdapterFormatException(file, "not a JSON object");
                CheckDuplicateKeys(file, doc.RootElement);
            }
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e) { throw new AdapterFormatException(file, $"not valid JSON ({e.Message})"); }
        if (root is not JsonObject o) throw new AdapterFormatException(file, "not a JSON object");

        string? peftType = GetString(file, o, "peft_type");
        if (peftType is not null && peftType != "LORA")
            throw new AdapterFormatException(file, $"peft_type '{peftType}' is not supported (only LORA)");
        if (!IsEmpty(o["modules_to_save"]))
            throw new AdapterFormatException(file, "modules_to_save is not supported: the adapter trains full copies of base modules, which cannot be co-served over one base model");
        if (GetBool(file, o, "use_dora") == true) throw new AdapterFormatException(file, "use_dora is not supported");
        if (GetBool(file, o, "fan_in_fan_out") == true) throw new AdapterFormatException(file, "fan_in_fan_out is not supported (Llama layers are not Conv1D)");
        string? bias = GetString(file, o, "bias");
        if (bias is not null && bias != "none") throw new AdapterFormatException(file, $"bias '{bias}' is not supported (only \"none\")");
        if (!IsEmpty(o["rank_pattern"])) throw new AdapterFormatException(file, "rank_pattern is not supported (one rank per adapter)");
        if (!IsEmpty(o["alpha_pattern"])) throw new AdapterFormatException(file, "alpha_pattern is not supported (one lora_alpha per adapter)");

        if (o["r"] is not JsonValue rv || !rv.TryGetValue(out int rank))
            throw new AdapterFormatException(file, "'r' is missing or not an integer");
        if (rank < 1) throw new AdapterFormatException(file, $"rank r={rank} must be at least 1");
        if (rank > maxRank) throw new AdapterFormatException(file, $"rank r={rank} exceeds the configured maximum of {maxRank}");
        double alpha = 8; // PEFT's default
        if (o["lora_alpha"] is { } av)
        {
            if (av is not JsonValue avv || !avv.TryGetValue(out alpha) || !double.IsFinite(alpha))
                throw new AdapterFormatException(file, "'lora_alpha' is not a number");
        }

        return new PeftAdapterConfig
        {
            Rank = rank,
            Alpha = alpha,
            Targets = ParseTargets(file, o["target_modules"]),
            UseRsLora = GetBool(file, o, "use_rslora") ?? false,
            BaseModelNameOrPath = GetString(file, o, "base_model_name_or_path"),
            LayersToTransform = ParseLayers(file, o["layers_to_transform"]),
        };
    }

    private static void CheckDuplicateKeys(string file, JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Array)
            foreach (var x in e.EnumerateArray()) CheckDuplicateKeys(file, x);
        if (e.ValueKind != JsonValueKind.Object) return;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in e.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw new AdapterFormatException(file, $"key '{p.Name}' appears twice");
            CheckDuplicateKeys(file, p.Value);
        }
    }

    private static IReadOnlyList<LoraTarget> ParseTargets(string file, JsonNode? node)
    {
        var names = new List<string>();
        switch (node)
        {
            case null: throw new AdapterFormatException(file, "'target_modules' is missing");
            case JsonValue v when v.TryGetValue(out string? s):
                if (s == "all-linear") return LoraTargets.All;
                names.Add(s); // a single module name; PEFT would treat other strings as a regular expression
                break;
            case JsonArray a:
                foreach (var e in a)
                {
                    if (e is not JsonValue ev || !ev.TryGetValue(out string? n))
                        throw new AdapterFormatException(file, "'target_modules' entries must be strings");
                    names.Add(n);
                }
                break;
            default: throw new AdapterFormatException(file, "'target_modules' must be a list of module names");
        }
        if (names.Count == 0) throw new AdapterFormatException(file, "'target_modules' is empty");
        var targets = new List<LoraTarget>();
        foreach (var n in names)
        {
            if (n is "embed_tokens" or "lm_head")
                throw new AdapterFormatException(file, $"target module '{n}' is not supported: LoRA on embeddings or the LM head cannot be co-served (supported: {SupportedList})");
            if (!LoraTargets.TryParse(n, out var t))
                throw new AdapterFormatException(file, $"unknown target module '{n}' (supported: {SupportedList}; regular expressions are not)");
            if (!targets.Contains(t)) targets.Add(t);
        }
        targets.Sort();
        return targets;
    }

    private static string SupportedList => string.Join(", ", LoraTargets.All.Select(LoraTargets.Name));

    private static IReadOnlyList<int>? ParseLayers(string file, JsonNode? node)
    {
        switch (node)
        {
            case null: return null;
            case JsonValue v when v.TryGetValue(out int one): return [one];
            case JsonArray a:
                var layers = new List<int>();
                foreach (var e in a)
                {
                    if (e is not JsonValue ev || !ev.TryGetValue(out int l) || l < 0)
                        throw new AdapterFormatException(file, "'layers_to_transform' entries must be non-negative integers");
                    layers.Add(l);
                }
                return layers;
            default: throw new AdapterFormatException(file, "'layers_to_transform' must be an integer or a list of integers");
        }
    }

    private static bool IsEmpty(JsonNode? n) => n switch
    {
        null => true,
        JsonArray a => a.Count == 0,
        JsonObject o => o.Count == 0,
        _ => false,
    };

    private static string? GetString(string file, JsonObject o, string key)
    {
        var n = o[key];
        if (n is null) return null;
        if (n is JsonValue v && v.TryGetValue(out string? s)) return s;
        throw new AdapterFormatException(file, $"'{key}' is not a string");
    }

    private static bool? GetBool(string file, JsonObject o, string key)
    {
        var n = o[key];
        if (n is null) return null;
        if (n is JsonValue v && v.TryGetValue(out bool b)) return b;
        throw new AdapterFormatException(file, $"'{key}' is not a boolean");
    }

    /// <summary>The JSON PEFT writes for this config (the fields PEFT reads back, with Loom's fixed choices).</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_to_transform"] = LayersToTransform is null ? null : new JsonArray(LayersToTransform.Select(l => (JsonNode?)l).ToArray()),
            ["lora_alpha"] = Alpha,
            ["lora_dropout"] = 0.0,
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = Rank,
            ["rank_pattern"] = new JsonObject(),
            ["target_modules"] = new JsonArray(Targets.Select(t => (JsonNode?)LoraTargets.Name(t)).ToArray()),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = false,
            ["use_rslora"] = UseRsLora,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
