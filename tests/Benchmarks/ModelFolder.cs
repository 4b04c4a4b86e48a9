using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Writes a model folder of random bf16 weights in the SmolLM2-135M shape with another folder's tokenizer
/// (by default models/loom-demo's, whose vocabulary sets vocab_size), so the HTTP benchmark can serve a model of a
/// real served size through the whole server: <c>model --out DIR [--tokenizer DIR]</c>.</summary>
internal static class ModelFolder
{
    public static void Run(string[] args)
    {
        string output = Arg(args, "--out") ?? throw new ArgumentException("usage: model --out DIR [--tokenizer DIR]");
        string tokenizerDir = Arg(args, "--tokenizer") ?? "models/loom-demo";
        var source = JsonNode.Parse(File.ReadAllText(Path.Combine(tokenizerDir, "config.json")))!.AsObject();
        ModelConfig s = Shapes.SmolLM2;
        int vocab = source["vocab_size"]!.GetValue<int>();
        Directory.CreateDirectory(output);
        foreach (string f in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json" })
            if (File.Exists(Path.Combine(tokenizerDir, f))) File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(output, f), overwrite: true);
        var config = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["vocab_size"] = vocab,
            ["hidden_size"] = s.HiddenSize, ["intermediate_size"] = s.IntermediateSize, ["num_hidden_layers"] = s.NumLayers,
            ["num_attention_heads"] = s.NumHeads, ["num_key_value_heads"] = s.NumKvHeads, ["head_dim"] = s.HeadDim,
            ["hidden_act"] = "silu", ["max_position_embeddings"] = 2048, ["rms_norm_eps"] = s.RmsNormEps, ["rope_theta"] = s.RopeTheta,
            ["tie_word_embeddings"] = true, ["torch_dtype"] = "bfloat16",
            ["bos_token_id"] = source["bos_token_id"]?.GetValue<int>(), ["eos_token_id"] = source["eos_token_id"]?.GetValue<int>(),
            ["pad_token_id"] = source["pad_token_id"]?.GetValue<int>(),
        };
        File.WriteAllText(Path.Combine(output, "config.json"), JsonSerializer.Serialize(config));
        var random = new Random(1);
        ushort[] Values(long count, float scale)
        {
            var v = new ushort[count];
            for (long i = 0; i < count; i++) v[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)(random.NextDouble() * 2 - 1) * scale) >> 16);
            return v;
        }
        ushort[] Ones(int count) => Enumerable.Repeat((ushort)(BitConverter.SingleToUInt32Bits(1f) >> 16), count).ToArray();
        int h = s.HiddenSize, q = s.NumHeads * s.HeadDim, kv = s.NumKvHeads * s.HeadDim, ffn = s.IntermediateSize;
        float w = 1f / MathF.Sqrt(h);
        var tensors = new List<TensorData>
        {
            TensorData.BF16("model.embed_tokens.weight", [vocab, h], Values((long)vocab * h, 0.5f)),
            TensorData.BF16("model.norm.weight", [h], Ones(h)),
        };
        for (int l = 0; l < s.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            tensors.Add(TensorData.BF16(p + "input_layernorm.weight", [h], Ones(h)));
            tensors.Add(TensorData.BF16(p + "post_attention_layernorm.weight", [h], Ones(h)));
            tensors.Add(TensorData.BF16(p + "self_attn.q_proj.weight", [q, h], Values((long)q * h, w)));
            tensors.Add(TensorData.BF16(p + "self_attn.k_proj.weight", [kv, h], Values((long)kv * h, w)));
            tensors.Add(TensorData.BF16(p + "self_attn.v_proj.weight", [kv, h], Values((long)kv * h, w)));
            tensors.Add(TensorData.BF16(p + "self_attn.o_proj.weight", [h, q], Values((long)h * q, w)));
            tensors.Add(TensorData.BF16(p + "mlp.gate_proj.weight", [ffn, h], Values((long)ffn * h, w)));
            tensors.Add(TensorData.BF16(p + "mlp.up_proj.weight", [ffn, h], Values((long)ffn * h, w)));
            tensors.Add(TensorData.BF16(p + "mlp.down_proj.weight", [h, ffn], Values((long)h * ffn, 1f / MathF.Sqrt(ffn))));
        }
        SafetensorsWriter.Write(Path.Combine(output, "model.safetensors"), tensors);
        Console.WriteLine($"wrote {output}: SmolLM2-135M shape with vocabulary {vocab} from {tokenizerDir}, " +
            $"{tensors.Sum(t => t.Bytes.Length) / 1e6:F0} MB of bf16 weights");
    }

    private static string? Arg(string[] args, string name) =>
        Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
