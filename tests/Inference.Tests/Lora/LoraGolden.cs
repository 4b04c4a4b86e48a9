using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Lora;

/// <summary>A PEFT adapter written by tests/reference/lora_oracle.py, with its torch-computed deltas and logits.</summary>
internal sealed class LoraGolden
{
    public required string Name { get; init; }
    public required string Directory { get; init; }
    public required string Model { get; init; }
    public required double Scale { get; init; }
    public required (int Layer, LoraTarget Target)[] Deltas { get; init; }

    public static readonly TheoryData<string> Names = new() { "llama_gqa_tied_r8", "llama3_scaled_bf16_r4" };

    /// <summary>golden/lora beside the test binaries when the project copies it there, else tests/golden/lora of the
    /// source tree this file was compiled from.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot([CallerFilePath] string source = "")
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "golden", "lora");
        if (System.IO.Directory.Exists(beside)) return beside;
        string tree = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", "..", "golden", "lora"));
        if (System.IO.Directory.Exists(tree)) return tree;
        throw new DirectoryNotFoundException($"golden LoRA files not found in {beside} or {tree}");
    }

    public static LoraGolden Load(string name)
    {
        string dir = Path.Combine(Root, name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        var r = doc.RootElement;
        return new LoraGolden
        {
            Name = name,
            Directory = dir,
            Model = r.GetProperty("model").GetString()!,
            Scale = r.GetProperty("scale").GetDouble(),
            Deltas = r.GetProperty("deltas").EnumerateArray()
                .Select(e => (e[0].GetInt32(), LoraTargets.TryParse(e[1].GetString()!, out var t) ? t : throw new InvalidDataException(e[1].GetString())))
                .ToArray(),
        };
    }

    public ModelConfig BaseConfig => ModelConfig.Load(Golden.PathOf(Model));

    /// <summary>The with-adapter prefill logits of every golden prompt of the base model, from the serving path: the
    /// adapter loaded into pool pages and applied unmerged, as the oracle's <c>prefill.i</c> tensors hold them.</summary>
    public IEnumerable<(int Prompt, float[] Logits, float[] Expected)> PrefillsWithAdapter(Transformer model)
    {
        var adapter = PeftAdapter.Load(Directory, model.Config);
        using var pool = new Loom.Inference.Memory.PagePool(2048L * model.Config.HiddenSize * 4, model.Config.HiddenSize);
        var r = Loom.Inference.Memory.AdapterResidency.TryCreate(pool, Name, 1, adapter)!;
        using var gf = SafetensorsFile.Open(Path.Combine(Directory, "golden.safetensors"));
        var prompts = Golden.Load(Model).Prompts;
        for (int i = 0; i < prompts.Length; i++)
        {
            var s = model.CreateState(prompts[i].Length, 1, allPositionLogits: true, maxLoraRank: adapter.Config.Rank);
            using var kv = Loom.Inference.Memory.PagedKvCache.For(pool, model.Config, i, 64);
            s.Add(kv, prompts[i], r);
            model.Forward(s, LogitsMode.AllPositions);
            yield return (i, s.LogitsBuffer.AsSpan(0, prompts[i].Length * model.Config.VocabSize).ToArray(), gf.ReadFloats($"prefill.{i}"));
        }
    }

    public (float[] X, float[] Y) Delta(int layer, LoraTarget target)
    {
        using var f = SafetensorsFile.Open(Path.Combine(Directory, "golden.safetensors"));
        string key = $"delta.{layer}.{LoraTargets.Name(target)}";
        return (f.ReadFloats(key + ".x"), f.ReadFloats(key + ".y"));
    }
}

/// <summary>A temporary adapter folder: a copy of a golden one, or a random one written by <see cref="PeftAdapterWriter"/>.</summary>
internal sealed class TempAdapter : IDisposable
{
    public string Path { get; }
    public string ConfigJson => System.IO.Path.Combine(Path, PeftAdapterConfig.FileName);
    public string Weights => System.IO.Path.Combine(Path, PeftAdapter.WeightsFileName);

    private TempAdapter() => Path = System.IO.Directory.CreateTempSubdirectory("loom-lora-").FullName;

    public static TempAdapter CopyOf(string goldenName)
    {
        var t = new TempAdapter();
        foreach (var f in new[] { PeftAdapterConfig.FileName, PeftAdapter.WeightsFileName })
            File.Copy(System.IO.Path.Combine(LoraGolden.Root, goldenName, f), System.IO.Path.Combine(t.Path, f));
        return t;
    }

    /// <summary>A random adapter for <paramref name="c"/> with the given rank and targets (every layer).</summary>
    /// <param name="bf16Values">Every weight a bfloat16 value (as an adapter trained and saved in bf16 holds), written as F32.</param>
    public static TempAdapter Random(ModelConfig c, int rank, LoraTarget[] targets, int seed, bool rsLora = false, double alpha = 16,
        bool bf16Values = false)
    {
        var t = new TempAdapter();
        var rng = new Random(seed);
        var modules = new List<LoraWeights>();
        for (int l = 0; l < c.NumLayers; l++)
            foreach (var target in targets)
            {
                var (i, o) = LoraTargets.Dims(c, target);
                float[] A = RandomArray(rng, rank * i), B = RandomArray(rng, o * rank);
                if (bf16Values)
                    foreach (var w in new[] { A, B })
                        for (int k = 0; k < w.Length; k++) w[k] = BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(w[k]) << 16);
                modules.Add(new LoraWeights(l, target, rank, i, o, A, B));
            }
        var config = new PeftAdapterConfig { Rank = rank, Alpha = alpha, Targets = targets, UseRsLora = rsLora, BaseModelNameOrPath = "loom-golden/test" };
        PeftAdapterWriter.Write(t.Path, config, modules);
        return t;
    }

    public static float[] RandomArray(Random rng, int n)
    {
        var a = new float[n];
        for (int k = 0; k < n; k++) a[k] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    public void EditConfig(Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(File.ReadAllText(ConfigJson))!.AsObject();
        edit(root);
        File.WriteAllText(ConfigJson, root.ToJsonString());
    }

    /// <summary>Rewrites the weights file through <paramref name="edit"/> (name → (shape, floats)), as F32.</summary>
    public void EditTensors(Action<Dictionary<string, (long[] Shape, float[] Values)>> edit)
    {
        var d = new Dictionary<string, (long[], float[])>();
        using (var f = SafetensorsFile.Open(Weights))
            foreach (var ti in f.Tensors) d[ti.Name] = (ti.Shape, f.ReadFloats(ti.Name));
        edit(d);
        SafetensorsWriter.Write(Weights, d.Select(kv => TensorData.F32(kv.Key, kv.Value.Item1, kv.Value.Item2)).ToList());
    }

    public void Dispose() => System.IO.Directory.Delete(Path, recursive: true);
}
