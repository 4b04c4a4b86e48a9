using System.Text.RegularExpressions;
using Loom.Inference.Model;

namespace Loom.Inference.Formats;

/// <summary>Limits an adapter must meet to be accepted for a base model.</summary>
/// <param name="MaxRank">Largest LoRA rank accepted.</param>
/// <param name="BaseModelName">When set, an adapter whose base_model_name_or_path names another model is refused
/// (compared on the last path segment, case-insensitively; an adapter that names none is accepted).</param>
/// <param name="MaxHeaderBytes">The largest safetensors header accepted: an adapter's is a tensor table of kilobytes (448
/// modules of a 64-layer model take about 100 KiB), so the base model's 100 MiB bound would be far too generous.</param>
/// <param name="MaxConfigBytes">The largest adapter_config.json read.</param>
public sealed record PeftValidation(int MaxRank = 128, string? BaseModelName = null, long MaxHeaderBytes = 4 * 1024 * 1024, long MaxConfigBytes = 1024 * 1024);

/// <summary>A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) read fully into
/// float32 and checked against the base model. Loading either succeeds completely or throws
/// <see cref="AdapterFormatException"/>; nothing is kept open.</summary>
public sealed partial class PeftAdapter
{
    public const string WeightsFileName = "adapter_model.safetensors";

    private readonly LoraWeights?[] _byModule; // (layers * LoraTargets.Count)

    public string Folder { get; }
    public PeftAdapterConfig Config { get; }
    public int Layers { get; }
    /// <summary>Every LoRA pair, ordered by layer then target.</summary>
    public IReadOnlyList<LoraWeights> Modules { get; }
    /// <summary>Bytes of all A and B weights as float32.</summary>
    public long WeightBytes { get; }

    internal PeftAdapter(string folder, PeftAdapterConfig config, int layers, List<LoraWeights> modules)
    {
        Folder = folder;
        Config = config;
        Layers = layers;
        modules.Sort((a, b) => a.Layer != b.Layer ? a.Layer.CompareTo(b.Layer) : a.Target.CompareTo(b.Target));
        Modules = modules;
        _byModule = new LoraWeights?[layers * LoraTargets.Count];
        foreach (var m in modules) _byModule[m.Layer * LoraTargets.Count + (int)m.Target] = m;
        WeightBytes = modules.Sum(m => m.Bytes);
    }

    public LoraWeights? Find(int layer, LoraTarget target) =>
        (uint)layer < (uint)Layers ? _byModule[layer * LoraTargets.Count + (int)target] : null;

    [GeneratedRegex(@"^base_model\.model\.model\.layers\.(\d{1,6})\.(self_attn|mlp)\.([a-z_]+)\.lora_(A|B)\.weight$")]
    private static partial Regex TensorNamePattern();

    public static PeftAdapter Load(string folder, ModelConfig baseModel, PeftValidation? validation = null)
    {
        validation ??= new PeftValidation();
        var config = ReadConfig(folder, baseModel, validation);
        string weightsPath = Path.Combine(folder, WeightsFileName);
        SafetensorsFile file;
        try { file = SafetensorsFile.Open(weightsPath, validation.MaxHeaderBytes); }
        catch (ModelFormatException e) { throw new AdapterFormatException(weightsPath, e.Problem, e); }
        catch (IOException e) { throw new AdapterFormatException(weightsPath, $"cannot read ({e.Message})", e); }
        using (file)
            return new PeftAdapter(folder, config, baseModel.NumLayers, ReadModules(weightsPath, file, config, baseModel));
    }

    /// <summary>Reads and checks adapter_config.json against the base model and checks the weights file is there, without
    /// reading it: enough to register an adapter whose files were validated in full before (at upload) and are
    /// known unchanged (their recorded hash). <see cref="Load"/> still checks every tensor when the weights are read.</summary>
    public static PeftAdapterConfig ReadConfig(string folder, ModelConfig baseModel, PeftValidation? validation = null)
    {
        validation ??= new PeftValidation();
        if (!Directory.Exists(folder)) throw new AdapterFormatException(folder, "adapter folder does not exist");
        string configPath = Path.Combine(folder, PeftAdapterConfig.FileName);
        string weightsPath = Path.Combine(folder, WeightsFileName);
        if (!File.Exists(configPath)) throw new AdapterFormatException(configPath, "adapter_config.json is missing");
        if (!File.Exists(weightsPath))
        {
            if (File.Exists(Path.Combine(folder, "adapter_model.bin")))
                throw new AdapterFormatException(weightsPath, "only adapter_model.bin (a pickle) is present; save the adapter with safe_serialization=True");
            throw new AdapterFormatException(weightsPath, "adapter_model.safetensors is missing");
        }
        long configBytes = new FileInfo(configPath).Length;
        if (configBytes > validation.MaxConfigBytes)
            throw new AdapterFormatException(configPath, $"adapter_config.json is {configBytes} bytes; at most {validation.MaxConfigBytes} are read");
        var config = PeftAdapterConfig.Parse(configPath, File.ReadAllText(configPath), validation.MaxRank);
        CheckBaseModel(configPath, config, validation.BaseModelName);
        if (config.LayersToTransform?.FirstOrDefault(l => l >= baseModel.NumLayers) is int bad && bad >= baseModel.NumLayers)
            throw new AdapterFormatException(configPath, $"layers_to_transform names layer {bad} but the base model has {baseModel.NumLayers} layers");
        return config;
    }

    private static void CheckBaseModel(string file, PeftAdapterConfig config, string? expected)
    {
        if (expected is null || string.IsNullOrEmpty(config.BaseModelNameOrPath)) return;
        static string Last(string s) => s.TrimEnd('/', '\\').Split('/', '\\')[^1];
        if (!string.Equals(Last(config.BaseModelNameOrPath), Last(expected), StringComparison.OrdinalIgnoreCase))
            throw new AdapterFormatException(file, $"adapter was trained for base model '{config.BaseModelNameOrPath}', not '{expected}'");
    }

    private static List<LoraWeights> ReadModules(string path, SafetensorsFile file, PeftAdapterConfig config, ModelConfig baseModel)
    {
        var a = new Dictionary<(int, LoraTarget), float[]>();
        var b = new Dictionary<(int, LoraTarget), float[]>();
        int r = config.Rank;
        foreach (var t in file.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            var m = TensorNamePattern().Match(t.Name);
            if (!m.Success)
            {
                string why = t.Name.Contains("lora_embedding") || t.Name.Contains("embed_tokens") || t.Name.Contains("lm_head")
                    ? "LoRA on embeddings or the LM head is not supported"
                    : t.Name.Contains("modules_to_save") ? "modules_to_save is not supported"
                    : "not a LoRA weight of a decoder layer (expected base_model.model.model.layers.N.<self_attn|mlp>.<module>.lora_<A|B>.weight)";
                throw new AdapterFormatException(path, $"tensor '{t.Name}': {why}");
            }
            int layer = int.Parse(m.Groups[1].Value);
            if (!LoraTargets.TryParse(m.Groups[3].Value, out var target) || LoraTargets.Group(target) != m.Groups[2].Value)
                throw new AdapterFormatException(path, $"tensor '{t.Name}': unknown module '{m.Groups[2].Value}.{m.Groups[3].Value}'");
            if (!config.Targets.Contains(target))
                throw new AdapterFormatException(path, $"tensor '{t.Name}': module {LoraTargets.Name(target)} is not in target_modules");
            if (layer >= baseModel.NumLayers)
                throw new AdapterFormatException(path, $"tensor '{t.Name}': layer {layer} does not exist (the base model has {baseModel.NumLayers} layers)");
            if (!config.AppliesToLayer(layer))
                throw new AdapterFormatException(path, $"tensor '{t.Name}': layer {layer} is not in layers_to_transform");
            bool isA = m.Groups[4].Value == "A";
            var (inF, outF) = LoraTargets.Dims(baseModel, target);
            long[] want = isA ? [r, inF] : [outF, r];
            if (t.Shape.Length != 2 || t.Shape[0] != want[0] || t.Shape[1] != want[1])
            {
                int gotRank = t.Shape.Length == 2 ? (int)Math.Min(int.MaxValue, isA ? t.Shape[0] : t.Shape[1]) : -1;
                string hint = gotRank > 0 && gotRank != r ? $" (rank {gotRank} in the tensor, r={r} in the config)" : " (adapter for another base model?)";
                throw new AdapterFormatException(path,
                    $"tensor '{t.Name}': shape [{string.Join(',', t.Shape)}] does not fit the base model, expected [{want[0]},{want[1]}]{hint}");
            }
            if (t.DType is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16))
                throw new AdapterFormatException(path, $"tensor '{t.Name}': dtype {TensorDTypes.ToName(t.DType)} is not a floating point weight type");
            var values = new float[t.ElementCount];
            DTypeConvert.ToFloat(path, t, file.GetBytes(t.Name), values);
            if (!DTypeConvert.AllFinite(values)) throw new AdapterFormatException(path, $"tensor '{t.Name}': contains NaN or infinite values");
            (isA ? a : b)[(layer, target)] = values;
        }

        var modules = new List<LoraWeights>();
        for (int l = 0; l < baseModel.NumLayers; l++)
        {
            if (!config.AppliesToLayer(l)) continue;
            foreach (var target in config.Targets)
            {
                bool hasA = a.TryGetValue((l, target), out var av), hasB = b.TryGetValue((l, target), out var bv);
                if (!hasA || !hasB)
                    throw new AdapterFormatException(path, $"tensor '{LoraTargets.TensorName(l, target, !hasA)}' is missing");
                var (inF, outF) = LoraTargets.Dims(baseModel, target);
                modules.Add(new LoraWeights(l, target, r, inF, outF, av!, bv!));
            }
        }
        return modules;
    }
}
