using System.Text.Json.Nodes;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;

namespace Loom.Inference.Tests.Peft;

/// <summary>Corrupt or unsupported adapters are refused with an <see cref="AdapterFormatException"/> that names the
/// file and, where one is at fault, the tensor.</summary>
public sealed class PeftBadInputTests
{
    private const string Name = "llama_gqa_tied_r8";
    private const string QA0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    private static readonly ModelConfig Base = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));

    private static AdapterFormatException Refused(TempAdapter t, string mustContain, PeftValidation? v = null, ModelConfig? config = null)
    {
        var e = Assert.Throws<AdapterFormatException>(() => PeftAdapter.Load(t.Path, config ?? Base, v));
        Assert.Contains(mustContain, e.Message);
        Assert.StartsWith(t.Path, e.File);
        return e;
    }

    [Fact]
    public void TruncatedWeightsFile()
    {
        using var t = TempAdapter.CopyOf(Name);
        var bytes = File.ReadAllBytes(t.Weights);
        File.WriteAllBytes(t.Weights, bytes[..(bytes.Length - 100)]);
        var e = Refused(t, "out of range");
        Assert.Equal(t.Weights, e.File);
    }

    [Fact]
    public void GarbageWeightsFile()
    {
        using var t = TempAdapter.CopyOf(Name);
        File.WriteAllBytes(t.Weights, [1, 2, 3]);
        Refused(t, "truncated");
    }

    [Fact]
    public void MissingFiles()
    {
        using var t = TempAdapter.CopyOf(Name);
        File.Delete(t.Weights);
        File.WriteAllBytes(Path.Combine(t.Path, "adapter_model.bin"), [0]);
        Refused(t, "pickle");
        File.Delete(t.ConfigJson);
        Refused(t, "adapter_config.json is missing");
    }

    [Fact]
    public void ConfigIsNotJson()
    {
        using var t = TempAdapter.CopyOf(Name);
        File.WriteAllText(t.ConfigJson, "{ \"r\": 8,");
        Refused(t, "not valid JSON");
    }

    [Fact]
    public void RankAboveTheLimit()
    {
        using var t = TempAdapter.CopyOf(Name);
        Refused(t, "r=8 exceeds the configured maximum of 4", new PeftValidation(MaxRank: 4));
    }

    [Fact]
    public void UnknownTargetModule()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditConfig(o => o["target_modules"] = new JsonArray("q_proj", "qkv_proj"));
        Refused(t, "unknown target module 'qkv_proj'");
    }

    [Fact]
    public void RegexTargetModulesAreRefused()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditConfig(o => o["target_modules"] = ".*(q|v)_proj");
        Refused(t, "regular expressions");
    }

    [Fact]
    public void ModulesToSave()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditConfig(o => o["modules_to_save"] = new JsonArray("lm_head"));
        Refused(t, "modules_to_save is not supported");
    }

    [Fact]
    public void EmbeddingAndLmHeadTargets()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditConfig(o => o["target_modules"] = new JsonArray("q_proj", "lm_head"));
        Refused(t, "'lm_head' is not supported");
        t.EditConfig(o => o["target_modules"] = new JsonArray("q_proj", "v_proj", "o_proj", "down_proj"));
        t.EditTensors(d => d["base_model.model.model.embed_tokens.lora_embedding_A"] = ([8, 320], new float[8 * 320]));
        Refused(t, "tensor 'base_model.model.model.embed_tokens.lora_embedding_A': LoRA on embeddings");
    }

    [Fact]
    public void UnsupportedVariants()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditConfig(o => o["use_dora"] = true);
        Refused(t, "use_dora");
        t.EditConfig(o => { o["use_dora"] = false; o["rank_pattern"] = new JsonObject { ["q_proj"] = 4 }; });
        Refused(t, "rank_pattern");
        t.EditConfig(o => { o["rank_pattern"] = new JsonObject(); o["peft_type"] = "IA3"; });
        Refused(t, "peft_type 'IA3'");
    }

    [Fact]
    public void AdapterForAnotherBaseModel()
    {
        // the bf16 model's adapter has q_proj of width 128; against llama_gqa_tied (q width 64) the shape is wrong
        using var t = TempAdapter.CopyOf("llama3_scaled_bf16_r4");
        var e = Refused(t, "tensor 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight': shape [4,128] does not fit the base model, expected [4,160]");
        Assert.Equal(t.Weights, e.File);
    }

    [Fact]
    public void BaseModelNameMismatch()
    {
        using var t = TempAdapter.CopyOf(Name);
        Refused(t, "trained for base model 'loom-golden/llama_gqa_tied'", new PeftValidation(BaseModelName: "/models/other-model"));
        PeftAdapter.Load(t.Path, Base, new PeftValidation(BaseModelName: "/srv/models/llama_gqa_tied/"));
    }

    [Fact]
    public void WrongShapeNamesTheTensor()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditTensors(d => d[QA0] = ([8, 63], new float[8 * 63]));
        Refused(t, $"tensor '{QA0}': shape [8,63]");
    }

    [Fact]
    public void RankDisagreesWithConfig()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditTensors(d => d[QA0] = ([16, 64], new float[16 * 64]));
        Refused(t, "rank 16 in the tensor, r=8 in the config");
    }

    [Fact]
    public void MissingAndUnexpectedTensors()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditTensors(d => d.Remove("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
        Refused(t, "tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' is missing");

        using var u = TempAdapter.CopyOf(Name);
        u.EditTensors(d => d["base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight"] = ([8, 64], new float[8 * 64]));
        Refused(u, "module gate_proj is not in target_modules");

        using var w = TempAdapter.CopyOf(Name);
        w.EditTensors(d => d["base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"] = ([8, 64], new float[8 * 64]));
        Refused(w, "layer 2 does not exist");

        using var x = TempAdapter.CopyOf(Name);
        x.EditTensors(d => d["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] = ([64, 64], new float[64 * 64]));
        Refused(x, "not a LoRA weight");
    }

    [Fact]
    public void NonFiniteWeights()
    {
        using var t = TempAdapter.CopyOf(Name);
        t.EditTensors(d => d[QA0].Values[17] = float.NaN);
        Refused(t, $"tensor '{QA0}': contains NaN");
    }

    [Fact]
    public void HeaderPastTheAdapterBoundIsRefusedBeforeItIsRead()
    {
        using var t = TempAdapter.CopyOf(Name);
        const int declared = 4 * 1024 * 1024 + 1;
        var bytes = new byte[8 + declared];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)declared);
        bytes.AsSpan(8).Fill((byte)' ');
        File.WriteAllBytes(t.Weights, bytes);
        Refused(t, "exceeds the 4194304-byte limit");
        // The bound decides: allowed a larger header, the same file fails later, on its content.
        var e = Assert.Throws<AdapterFormatException>(() => PeftAdapter.Load(t.Path, Base, new PeftValidation(MaxHeaderBytes: 8 * 1024 * 1024)));
        Assert.DoesNotContain("exceeds", e.Message);
    }

    [Fact]
    public void OversizedConfigIsRefusedUnread()
    {
        using var t = TempAdapter.CopyOf(Name);
        var config = File.ReadAllText(t.ConfigJson);
        File.WriteAllText(t.ConfigJson, new string(' ', 1024 * 1024) + config);
        Refused(t, "at most 1048576 are read");
        // Within a larger bound the padded config is valid JSON and loads.
        Assert.NotNull(PeftAdapter.Load(t.Path, Base, new PeftValidation(MaxConfigBytes: 2 * 1024 * 1024)));
    }
}
