using System.Text;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;

namespace Loom.Inference.Tests.Peft;

/// <summary>Seeded fuzzing: damaged adapter files either load or fail with <see cref="AdapterFormatException"/>,
/// never with another exception type.</summary>
public sealed class PeftFuzzTests
{
    private static readonly ModelConfig Base = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));

    [Fact]
    public void FlippedBytesInTheWeightsHeader()
    {
        using var t = TempAdapter.CopyOf("llama_gqa_tied_r8");
        var original = File.ReadAllBytes(t.Weights);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(original, 0);
        var rng = new Random(77);
        int refused = 0;
        for (int i = 0; i < 150; i++)
        {
            var bytes = (byte[])original.Clone();
            for (int k = rng.Next(1, 4); k > 0; k--) bytes[rng.Next(headerEnd)] = (byte)rng.Next(256);
            File.WriteAllBytes(t.Weights, bytes);
            try { PeftAdapter.Load(t.Path, Base); }
            catch (AdapterFormatException e) { refused++; Assert.Equal(t.Weights, e.File); }
        }
        Assert.True(refused > 50, $"only {refused} of 150 damaged headers were refused");
    }

    [Fact]
    public void MangledConfigJson()
    {
        using var t = TempAdapter.CopyOf("llama_gqa_tied_r8");
        string original = File.ReadAllText(t.ConfigJson);
        var rng = new Random(78);
        string[] inserts = ["\"r\": \"8\",", "\"r\": 1e9,", "\"r\": 8, \"r\": 9,", "\"target_modules\": 7,", "null", "[", "\"lora_alpha\": \"x\",",
            "\"layers_to_transform\": [\"a\"],", "\"use_rslora\": 1,", "\"modules_to_save\": \"lm_head\",",
            "\"rank_pattern\": {\"q\": 1, \"q\": 2},"];
        for (int i = 0; i < 150; i++)
        {
            var sb = new StringBuilder(original);
            if (rng.Next(2) == 0) sb.Insert(1, inserts[rng.Next(inserts.Length)]);
            else sb.Remove(rng.Next(sb.Length - 5), rng.Next(1, 5));
            File.WriteAllText(t.ConfigJson, sb.ToString());
            try { PeftAdapter.Load(t.Path, Base); }
            catch (AdapterFormatException e) { Assert.Equal(t.ConfigJson, e.File); }
        }
    }
}
