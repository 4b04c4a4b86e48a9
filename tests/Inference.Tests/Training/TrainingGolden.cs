using System.Runtime.CompilerServices;
using System.Text.Json;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Training;

namespace Loom.Inference.Tests.Training;

/// <summary>A case written by tests/reference/training_oracle.py: a starting adapter, examples with loss masks, and the
/// float64 autograd loss, gradients, AdamW steps and logits.</summary>
internal sealed class TrainingGolden
{
    public required string Name { get; init; }
    public required string Directory { get; init; }
    public required string Model { get; init; }
    public required TrainingExample[] Examples { get; init; }
    public required double[] Losses { get; init; }
    public required int Steps { get; init; }
    public required int PerStep { get; init; }
    public JsonElement? Hyperparameters { get; init; }

    public static readonly TheoryData<string> GradientCases = new()
    {
        "llama_gqa_tied_all", "qwen2_bias_all", "llama3_scaled_bf16_subset", "mistral_hd64_vdown",
    };

    public static string Root { get; } = FindRoot();

    private static string FindRoot([CallerFilePath] string source = "")
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "golden", "training");
        if (System.IO.Directory.Exists(beside)) return beside;
        string tree = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", "golden", "training"));
        if (System.IO.Directory.Exists(tree)) return tree;
        throw new DirectoryNotFoundException($"golden training files not found in {beside} or {tree}");
    }

    public static TrainingGolden Load(string name)
    {
        string dir = Path.Combine(Root, name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        var r = doc.RootElement;
        var examples = r.GetProperty("examples").EnumerateArray().Select(e => new TrainingExample(
            e.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            e.GetProperty("mask").EnumerateArray().Select(x => x.GetBoolean()).ToArray())).ToArray();
        var hp = r.GetProperty("hyperparameters");
        return new TrainingGolden
        {
            Name = name,
            Directory = dir,
            Model = r.GetProperty("model").GetString()!,
            Examples = examples,
            Losses = r.GetProperty("losses").EnumerateArray().Select(x => x.GetDouble()).ToArray(),
            Steps = r.GetProperty("steps").GetInt32(),
            PerStep = r.GetProperty("per_step").GetInt32(),
            Hyperparameters = hp.ValueKind == JsonValueKind.Null ? null : hp.Clone(),
        };
    }

    public float[] Tensor(string name)
    {
        using var f = SafetensorsFile.Open(Path.Combine(Directory, "golden.safetensors"));
        return f.ReadFloats(name);
    }

    /// <summary>The golden model on the kernels of <paramref name="level"/> (null: the best this machine has). A test
    /// asking for Vector512 on a machine without AVX-512 is skipped, visibly (call it from a skippable test).</summary>
    public Transformer LoadModel(SimdLevel? level = null, bool? pack = null)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        string dir = Golden.PathOf(Model);
        var config = ModelConfig.Load(dir);
        var weights = ModelWeights.Load(dir, config, pack: pack);
        return new Transformer(weights, new CpuKernels(level ?? Simd.Best));
    }

    public PeftAdapter LoadAdapter(ModelConfig config) => PeftAdapter.Load(Directory, config);
}
