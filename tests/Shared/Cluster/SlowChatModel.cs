using System.Text.Json;
using Loom.Inference.Formats;

namespace Loom.Tests.Shared;

/// <summary>
/// A second base model for the tests whose streams must still be running when something happens to them (a kill, a
/// client leaving): a Llama of random weights large enough that a token takes milliseconds on this machine (hidden 512,
/// 8 layers, 24.5 M parameters; the golden tiny model writes a 1,200-token stream in tens of milliseconds), with the
/// golden tokenizer and chat template, as "slow-chat". Also random LoRA adapters of its shape. Shared by
/// tests/Cluster.Tests and the benchmarks' cluster suite (linked by both; outside the folder the other test projects
/// take whole, since it needs Loom.Inference).
/// </summary>
public static class SlowChatModel
{
    public const string Name = "slow-chat";
    private const int Hidden = 512, Layers = 8, Heads = 8, KvHeads = 2, HeadDim = 64, Intermediate = 1536, Vocab = 320;

    public static string CreateIn(string dir, string goldenDirectory)
    {
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(goldenDirectory, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        GoldenChatModel.WriteChatTemplate(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_size"] = Hidden, ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = Layers, ["num_attention_heads"] = Heads, ["num_key_value_heads"] = KvHeads, ["head_dim"] = HeadDim,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = false, ["max_position_embeddings"] = 1024,
            ["vocab_size"] = Vocab, ["bos_token_id"] = 317, ["eos_token_id"] = 318, ["torch_dtype"] = "float32", ["hidden_act"] = "silu",
        }));
        var random = new Random(17);
        float[] Values(long count, float scale) => [.. Enumerable.Range(0, (int)count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale)];
        float[] Ones(int count) => [.. Enumerable.Repeat(1f, count)];
        var tensors = new List<TensorData>
        {
            TensorData.F32("model.embed_tokens.weight", [Vocab, Hidden], Values((long)Vocab * Hidden, 0.5f)),
            TensorData.F32("model.norm.weight", [Hidden], Ones(Hidden)),
            TensorData.F32("lm_head.weight", [Vocab, Hidden], Values((long)Vocab * Hidden, 0.05f)),
        };
        var w = 1f / MathF.Sqrt(Hidden);
        for (var l = 0; l < Layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add(TensorData.F32(p + "input_layernorm.weight", [Hidden], Ones(Hidden)));
            tensors.Add(TensorData.F32(p + "post_attention_layernorm.weight", [Hidden], Ones(Hidden)));
            tensors.Add(TensorData.F32(p + "self_attn.q_proj.weight", [Heads * HeadDim, Hidden], Values((long)Heads * HeadDim * Hidden, w)));
            tensors.Add(TensorData.F32(p + "self_attn.k_proj.weight", [KvHeads * HeadDim, Hidden], Values((long)KvHeads * HeadDim * Hidden, w)));
            tensors.Add(TensorData.F32(p + "self_attn.v_proj.weight", [KvHeads * HeadDim, Hidden], Values((long)KvHeads * HeadDim * Hidden, w)));
            tensors.Add(TensorData.F32(p + "self_attn.o_proj.weight", [Hidden, Heads * HeadDim], Values((long)Hidden * Heads * HeadDim, w)));
            tensors.Add(TensorData.F32(p + "mlp.gate_proj.weight", [Intermediate, Hidden], Values((long)Intermediate * Hidden, w)));
            tensors.Add(TensorData.F32(p + "mlp.up_proj.weight", [Intermediate, Hidden], Values((long)Intermediate * Hidden, w)));
            tensors.Add(TensorData.F32(p + "mlp.down_proj.weight", [Hidden, Intermediate], Values((long)Hidden * Intermediate, 1f / MathF.Sqrt(Intermediate))));
        }
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        return dir;
    }

    /// <summary>A PEFT folder of a random rank-<paramref name="rank"/> LoRA adapter of this model on q_proj and v_proj
    /// (about 420 KB at rank 8), the same for the same seed.</summary>
    public static string WriteAdapter(string folder, int rank, int seed)
    {
        var random = new Random(seed);
        float[] Values(int count, float scale) => [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale)];
        var modules = new List<LoraWeights>();
        for (var l = 0; l < Layers; l++)
            foreach (var (target, outDim) in new[] { (LoraTarget.QProj, Heads * HeadDim), (LoraTarget.VProj, KvHeads * HeadDim) })
                modules.Add(new LoraWeights(l, target, rank, Hidden, outDim, Values(rank * Hidden, 1 / MathF.Sqrt(Hidden)), Values(outDim * rank, 1 / MathF.Sqrt(rank))));
        PeftAdapterWriter.Write(folder, new PeftAdapterConfig { Rank = rank, Alpha = 2 * rank, Targets = [LoraTarget.QProj, LoraTarget.VProj] }, modules);
        return folder;
    }
}
