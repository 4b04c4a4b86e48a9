using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Formats;

public sealed class ConfigAndCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("loom-cfg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Llama = """
        {"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,
         "num_attention_heads":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":500000.0,
         "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
         "tie_word_embeddings":true,"max_position_embeddings":131072,"vocab_size":128256,"bos_token_id":128000,
         "eos_token_id":128001,"hidden_act":"silu","head_dim":64}
        """;

    private static ModelConfig Parse(string json) => HfConfigReader.Parse("config.json", json);

    private static string Edit(string json, Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(json)!.AsObject();
        edit(o);
        return o.ToJsonString();
    }

    [Fact]
    public void ReadsALlama32Config()
    {
        var c = Parse(Llama);
        Assert.Equal(("llama", 2048, 8192, 16, 32, 8, 64, 128256), (c.ModelType, c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKvHeads, c.HeadDim, c.VocabSize));
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(500000, c.RopeTheta);
        Assert.Equal(new Llama3RopeScaling(32, 1, 4, 8192), c.RopeScaling);
        Assert.True(c.TieWordEmbeddings);
        Assert.False(c.QkvBias);
        Assert.Equal(128000, c.BosTokenId);
        Assert.Equal([128001], c.EosTokenIds);
        Assert.Equal(131072, c.MaxPositionEmbeddings);
        Assert.InRange(c.ParameterCount, 1_235_000_000, 1_236_000_000);
    }

    [Fact]
    public void ReadsQwen2AndMistralDefaults()
    {
        var q = Parse("""{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"eos_token_id":[151643,151645],"rope_theta":1000000.0,"tie_word_embeddings":true,"rope_scaling":null}""");
        Assert.True(q.QkvBias);
        Assert.False(q.OutputBias);
        Assert.Equal(64, q.HeadDim);
        Assert.Equal([151643, 151645], q.EosTokenIds);
        Assert.Null(q.RopeScaling);
        var m = Parse("""{"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":32000,"sliding_window":null}""");
        Assert.Equal((128, 10000.0, 1e-6, false, false), (m.HeadDim, m.RopeTheta, m.RmsNormEps, m.TieWordEmbeddings, m.QkvBias));
        var withBias = Parse(Edit(Llama, o => o["attention_bias"] = true));
        Assert.True(withBias.QkvBias && withBias.OutputBias);
    }

    public static TheoryData<string, string> BadConfigs() => new()
    {
        { Edit(Llama, o => o.Remove("hidden_size")), "missing key 'hidden_size'" },
        { Edit(Llama, o => o.Remove("vocab_size")), "missing key 'vocab_size'" },
        { Edit(Llama, o => o.Remove("model_type")), "missing key 'model_type'" },
        { Edit(Llama, o => o["model_type"] = "gpt2"), "unknown model type 'gpt2'" },
        { Edit(Llama, o => o["hidden_size"] = "big"), "'hidden_size' must be an integer" },
        { Edit(Llama, o => o["num_key_value_heads"] = 5), "not a multiple" },
        { Edit(Llama, o => o["num_hidden_layers"] = 0), "must be positive" },
        { Edit(Llama, o => o["hidden_act"] = "gelu"), "unsupported hidden_act" },
        { Edit(Llama, o => o["rope_scaling"]!["rope_type"] = "yarn"), "unsupported rope_scaling type 'yarn'" },
        { Edit(Llama, o => o["rope_scaling"]!.AsObject().Remove("factor")), "missing key 'rope_scaling.factor'" },
        { Edit(Llama, o => o["eos_token_id"] = 999999), "outside the vocabulary" },
        { Edit(Llama, o => o["head_dim"] = 63), "must be even" },
        { "[]", "not a JSON object" },
        { "{", "not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void BadConfigsNameTheFileAndTheProblem(string json, string expected)
    {
        var e = Assert.Throws<ModelFormatException>(() => Parse(json));
        Assert.Equal("config.json", e.File);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void GenerationConfigOverridesEos()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), Llama);
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"bos_token_id":128000,"eos_token_id":[128001,128008,128009]}""");
        Assert.Equal([128001, 128008, 128009], ModelConfig.Load(_dir).EosTokenIds);
        Assert.Contains("file not found", Assert.Throws<ModelFormatException>(() => ModelConfig.Load(Path.Combine(_dir, "nope"))).Message);
    }

    [Fact]
    public void ShardedCheckpointsResolveThroughTheIndexAndReportBrokenOnes()
    {
        using (var ck = SafetensorsCheckpoint.Open(Golden.PathOf("qwen2_bias")))
        {
            Assert.Contains("model.embed_tokens.weight", ck.TensorNames);
            Assert.Contains("lm_head.weight", ck.TensorNames);
            Assert.NotEqual(ck.FileOf("model.embed_tokens.weight").Path, ck.FileOf("lm_head.weight").Path);
        }
        SafetensorsWriter.Write(Path.Combine(_dir, "s1.safetensors"), [TensorData.F32("x", [1], [1f])]);
        void Index(string json) => File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFileName), json);
        Index("""{"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}}""");
        Assert.Contains("shard 's2.safetensors' does not exist", Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir)).Message);
        Index("""{"weight_map":{"x":"s1.safetensors","y":"s1.safetensors"}}""");
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir));
        Assert.Contains("tensor 'y' is listed", e.Message);
        Assert.EndsWith("s1.safetensors", e.File);
        Index("""{"weight_map":{"x":"../s1.safetensors"}}""");
        Assert.Contains("not a plain file name", Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir)).Message);
        Index("""{"metadata":{}}""");
        Assert.Contains("weight_map", Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir)).Message);
        Assert.Contains("neither", Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(Path.Combine(_dir, "none"))).Message);
    }

    [Fact]
    public void WeightsWithTheWrongShapeOrMissingHeadAreReported()
    {
        string src = Golden.PathOf("llama_gqa_tied");
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(_dir, "model.safetensors"));
        var config = ModelConfig.Load(src);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(_dir, config with { IntermediateSize = 128 }));
        Assert.Contains("expected [128,64]", e.Message);
        Assert.EndsWith("model.safetensors", e.File);
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(_dir, config with { TieWordEmbeddings = false }));
        Assert.Contains("lm_head.weight", e.Message);
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(_dir, config with { QkvBias = true }));
        Assert.Contains("q_proj.bias' not found", e.Message);
    }

    [Fact]
    public void F16CheckpointsLoadAsF32()
    {
        // rewrite the tied llama's weights as F16 and check logits stay close to the F32 model
        string src = Golden.PathOf("llama_gqa_tied");
        using (var f = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
        {
            var tensors = f.Tensors.Select(t => new TensorData(t.Name, TensorDType.F16, t.Shape,
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.ReadFloats(t.Name).Select(x => (Half)x).ToArray().AsSpan()).ToArray())).ToList();
            SafetensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), tensors);
        }
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(_dir, "config.json"));
        var config = ModelConfig.Load(_dir);
        using var m16 = new Transformer(ModelWeights.Load(_dir, config), maxContext: 32);
        Assert.Equal(Loom.Inference.Kernels.WeightType.F32, m16.Weights.Embedding.Type);
        using var m32 = Loom.Inference.Tests.Model.GoldenLogitsTests.Open("llama_gqa_tied");
        var g = Golden.Load("llama_gqa_tied");
        var a = Loom.Inference.Tests.Model.GoldenLogitsTests.PrefillAll(m16, g.Prompts[1]);
        var b = Loom.Inference.Tests.Model.GoldenLogitsTests.PrefillAll(m32, g.Prompts[1]);
        Compare.Close(null, "f16 vs f32 weights", a, b, 1e-2);   // f16 keeps 11 significant bits
    }
}
