using System.Text.Json;
using Loom.Inference.Model;

namespace Loom.Inference.Formats;

/// <summary>Reads a Hugging Face config.json (and generation_config.json when present) into a <see cref="ModelConfig"/>.</summary>
public static class HfConfigReader
{
    public static readonly IReadOnlyList<string> SupportedModelTypes = ["llama", "mistral", "qwen2"];

    public static ModelConfig Read(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException(path, "file not found");
        var config = Parse(path, File.ReadAllText(path));
        string genPath = Path.Combine(modelDirectory, "generation_config.json");
        return File.Exists(genPath) ? ApplyGenerationConfig(genPath, File.ReadAllText(genPath), config) : config;
    }

    public static ModelConfig Parse(string path, string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON ({e.Message})"); }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "not a JSON object");
            var c = new Reader(path, r);
            string type = c.String("model_type") ?? throw new ModelFormatException(path, "missing key 'model_type'");
            if (!SupportedModelTypes.Contains(type))
                throw new ModelFormatException(path, $"unknown model type '{type}' (supported: {string.Join(", ", SupportedModelTypes)})");
            string act = c.String("hidden_act") ?? "silu";
            if (act != "silu") throw new ModelFormatException(path, $"unsupported hidden_act '{act}' (only silu)");
            if (c.Bool("mlp_bias") == true) throw new ModelFormatException(path, "mlp_bias is not supported");

            int hidden = c.RequiredInt("hidden_size");
            int heads = c.RequiredInt("num_attention_heads");
            int kvHeads = c.Int("num_key_value_heads") ?? heads;
            int headDim = c.Int("head_dim") ?? (heads > 0 ? hidden / heads : 0);
            bool attentionBias = c.Bool("attention_bias") ?? false;
            var cfg = new ModelConfig
            {
                ModelType = type,
                HiddenSize = hidden,
                IntermediateSize = c.RequiredInt("intermediate_size"),
                NumLayers = c.RequiredInt("num_hidden_layers"),
                NumHeads = heads,
                NumKvHeads = kvHeads,
                HeadDim = headDim,
                VocabSize = c.RequiredInt("vocab_size"),
                RmsNormEps = c.Double("rms_norm_eps") ?? 1e-6,
                RopeTheta = c.Double("rope_theta") ?? 10000,
                RopeScaling = ReadRopeScaling(path, r),
                MaxPositionEmbeddings = c.Int("max_position_embeddings") ?? (type == "qwen2" ? 32768 : 2048),
                TieWordEmbeddings = c.Bool("tie_word_embeddings") ?? false,
                QkvBias = type == "qwen2" || attentionBias,
                OutputBias = type != "qwen2" && attentionBias,
                BosTokenId = c.Int("bos_token_id"),
                EosTokenIds = c.IntOrIntList("eos_token_id"),
            };
            Validate(path, cfg);
            return cfg;
        }
    }

    private static void Validate(string path, ModelConfig c)
    {
        void Positive(string key, int v) { if (v <= 0) throw new ModelFormatException(path, $"'{key}' must be positive (got {v})"); }
        Positive("hidden_size", c.HiddenSize);
        Positive("intermediate_size", c.IntermediateSize);
        Positive("num_hidden_layers", c.NumLayers);
        Positive("num_attention_heads", c.NumHeads);
        Positive("num_key_value_heads", c.NumKvHeads);
        Positive("head_dim", c.HeadDim);
        Positive("vocab_size", c.VocabSize);
        Positive("max_position_embeddings", c.MaxPositionEmbeddings);
        if (c.NumHeads % c.NumKvHeads != 0)
            throw new ModelFormatException(path, $"num_attention_heads {c.NumHeads} is not a multiple of num_key_value_heads {c.NumKvHeads}");
        if (c.HeadDim % 2 != 0) throw new ModelFormatException(path, $"head_dim {c.HeadDim} must be even for RoPE");
        if (!(c.RmsNormEps > 0)) throw new ModelFormatException(path, "'rms_norm_eps' must be positive");
        if (!(c.RopeTheta > 0)) throw new ModelFormatException(path, "'rope_theta' must be positive");
        foreach (int e in c.EosTokenIds)
            if (e < 0 || e >= c.VocabSize) throw new ModelFormatException(path, $"eos_token_id {e} is outside the vocabulary");
        if (c.BosTokenId is int b && (b < 0 || b >= c.VocabSize))
            throw new ModelFormatException(path, $"bos_token_id {b} is outside the vocabulary");
    }

    private static Llama3RopeScaling? ReadRopeScaling(string path, JsonElement root)
    {
        if (!root.TryGetProperty("rope_scaling", out var s) || s.ValueKind == JsonValueKind.Null) return null;
        if (s.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "'rope_scaling' must be an object or null");
        var c = new Reader(path, s, "rope_scaling.");
        string type = c.String("rope_type") ?? c.String("type") ?? throw new ModelFormatException(path, "'rope_scaling' has no rope_type");
        if (type == "default") return null;
        if (type != "llama3") throw new ModelFormatException(path, $"unsupported rope_scaling type '{type}' (supported: llama3)");
        var r = new Llama3RopeScaling(c.RequiredDouble("factor"), c.RequiredDouble("low_freq_factor"),
            c.RequiredDouble("high_freq_factor"), c.RequiredInt("original_max_position_embeddings"));
        if (!(r.Factor > 0) || !(r.LowFreqFactor > 0) || !(r.HighFreqFactor > r.LowFreqFactor) || r.OriginalMaxPositionEmbeddings <= 0)
            throw new ModelFormatException(path, "rope_scaling values are out of range (need factor > 0, high_freq_factor > low_freq_factor > 0)");
        return r;
    }

    public static ModelConfig ApplyGenerationConfig(string path, string json, ModelConfig config)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "not a JSON object");
            var c = new Reader(path, doc.RootElement);
            var eos = c.IntOrIntList("eos_token_id");
            var result = config with
            {
                BosTokenId = c.Int("bos_token_id") ?? config.BosTokenId,
                EosTokenIds = eos.Count > 0 ? eos : config.EosTokenIds,
            };
            Validate(path, result);
            return result;
        }
    }

    private readonly struct Reader(string path, JsonElement obj, string prefix = "")
    {
        private bool TryGet(string key, out JsonElement e) =>
            obj.TryGetProperty(key, out e) && e.ValueKind != JsonValueKind.Null;

        public string? String(string key)
        {
            if (!TryGet(key, out var e)) return null;
            return e.ValueKind == JsonValueKind.String ? e.GetString() : throw new ModelFormatException(path, $"'{prefix}{key}' must be a string");
        }

        public int? Int(string key)
        {
            if (!TryGet(key, out var e)) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)) return v;
            throw new ModelFormatException(path, $"'{prefix}{key}' must be an integer (got {e})");
        }

        public int RequiredInt(string key) => Int(key) ?? throw new ModelFormatException(path, $"missing key '{prefix}{key}'");

        public double? Double(string key)
        {
            if (!TryGet(key, out var e)) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double v) && double.IsFinite(v)) return v;
            throw new ModelFormatException(path, $"'{prefix}{key}' must be a number (got {e})");
        }

        public double RequiredDouble(string key) => Double(key) ?? throw new ModelFormatException(path, $"missing key '{prefix}{key}'");

        public bool? Bool(string key)
        {
            if (!TryGet(key, out var e)) return null;
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ModelFormatException(path, $"'{prefix}{key}' must be true or false"),
            };
        }

        public IReadOnlyList<int> IntOrIntList(string key)
        {
            if (!TryGet(key, out var e)) return [];
            if (e.ValueKind == JsonValueKind.Array)
            {
                var list = new List<int>();
                foreach (var x in e.EnumerateArray())
                {
                    if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out int v))
                        throw new ModelFormatException(path, $"'{prefix}{key}' must hold integers");
                    list.Add(v);
                }
                return list;
            }
            return [Int(key)!.Value];
        }
    }
}
