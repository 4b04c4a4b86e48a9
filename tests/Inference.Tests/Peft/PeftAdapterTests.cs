using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;

namespace Loom.Inference.Tests.Peft;

/// <summary>PEFT adapter folders: the oracle's adapters load and validate; Loom's writer round-trips.</summary>
public sealed class PeftAdapterTests
{
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void GoldenAdapterLoadsAndValidates(string name)
    {
        var g = LoraGolden.Load(name);
        var config = g.BaseConfig;
        var a = PeftAdapter.Load(g.Directory, config);
        Assert.Equal(g.Scale, a.Config.Scale, 6);
        Assert.Equal(config.NumLayers * a.Config.Targets.Count, a.Modules.Count);
        foreach (var m in a.Modules)
        {
            var (i, o) = LoraTargets.Dims(config, m.Target);
            Assert.Equal((a.Config.Rank, i, o), (m.Rank, m.In, m.Out));
            Assert.Equal(m.Rank * i, m.A.Length);
            Assert.Equal(o * m.Rank, m.B.Length);
            Assert.Same(m, a.Find(m.Layer, m.Target));
        }
        Assert.Equal(a.Modules.Sum(m => 4L * (m.A.Length + m.B.Length)), a.WeightBytes);
    }

    [Fact]
    public void GoldenConfigsCarryTheOracleSettings()
    {
        var r8 = PeftAdapter.Load(LoraGolden.Load("llama_gqa_tied_r8").Directory, LoraGolden.Load("llama_gqa_tied_r8").BaseConfig);
        Assert.Equal(8, r8.Config.Rank);
        Assert.False(r8.Config.UseRsLora);
        Assert.Equal([LoraTarget.QProj, LoraTarget.VProj, LoraTarget.OProj, LoraTarget.DownProj], r8.Config.Targets);
        Assert.Equal(16f / 8, r8.Config.Scale);
        var g4 = LoraGolden.Load("llama3_scaled_bf16_r4");
        var r4 = PeftAdapter.Load(g4.Directory, g4.BaseConfig);
        Assert.True(r4.Config.UseRsLora);
        Assert.Equal(8f / 2, r4.Config.Scale); // alpha / sqrt(r)
        Assert.Null(r4.Find(0, LoraTarget.VProj));
    }

    [Fact]
    public void WriteThenReadRoundTrips()
    {
        var g = LoraGolden.Load("llama3_scaled_bf16_r4");
        var original = PeftAdapter.Load(g.Directory, g.BaseConfig);
        var dir = Directory.CreateTempSubdirectory("loom-lora-").FullName;
        try
        {
            PeftAdapterWriter.Write(dir, original);
            var back = PeftAdapter.Load(dir, g.BaseConfig);
            Assert.Equal(original.Config.Rank, back.Config.Rank);
            Assert.Equal(original.Config.Alpha, back.Config.Alpha);
            Assert.Equal(original.Config.UseRsLora, back.Config.UseRsLora);
            Assert.Equal(original.Config.Targets, back.Config.Targets);
            Assert.Equal(original.Config.BaseModelNameOrPath, back.Config.BaseModelNameOrPath);
            Assert.Equal(original.Modules.Count, back.Modules.Count);
            for (int i = 0; i < original.Modules.Count; i++)
            {
                Assert.Equal(original.Modules[i].A, back.Modules[i].A);
                Assert.Equal(original.Modules[i].B, back.Modules[i].B);
            }
            using var f = SafetensorsFile.Open(Path.Combine(dir, PeftAdapter.WeightsFileName));
            Assert.Contains("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight", f.Tensors.Select(t => t.Name));
            Assert.Equal("pt", f.Metadata["format"]);
            Assert.DoesNotContain(Directory.GetFiles(dir), p => p.EndsWith(".tmp"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AllLinearAndLayersToTransformAreUnderstood()
    {
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var t = TempAdapter.Random(config, 2, [.. LoraTargets.All], seed: 5);
        t.EditConfig(o => o["target_modules"] = "all-linear");
        Assert.Equal(LoraTargets.All, PeftAdapter.Load(t.Path, config).Config.Targets);
        t.EditTensors(d => { foreach (var k in d.Keys.Where(k => k.Contains("layers.0.")).ToList()) d.Remove(k); });
        t.EditConfig(o => o["layers_to_transform"] = new System.Text.Json.Nodes.JsonArray(1));
        var a = PeftAdapter.Load(t.Path, config);
        Assert.Null(a.Find(0, LoraTarget.QProj));
        Assert.NotNull(a.Find(1, LoraTarget.QProj));
    }
}
