using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>
/// Loom on a real Kestrel socket (a client that goes away must abort its request, which TestServer
/// cannot show), serving a random model with a long context, wide enough that 2,000 tokens take seconds.
/// </summary>
public sealed class KestrelChatModelFactory : ChatModelFactory
{
    public KestrelChatModelFactory() => UseKestrel(0);

    protected override string CreateModelDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"loom-model-{Guid.NewGuid():N}", ModelName);
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(GoldenModel, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        GoldenChatModel.WriteChatTemplate(dir);
        const int hidden = 512, layers = 6, heads = 8, inter = 1536, vocab = 320;
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"model_type": "llama", "hidden_size": {{hidden}}, "intermediate_size": {{inter}}, "num_hidden_layers": {{layers}},
             "num_attention_heads": {{heads}}, "num_key_value_heads": {{heads}}, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "tie_word_embeddings": false, "max_position_embeddings": 4096, "vocab_size": {{vocab}}, "bos_token_id": 317, "eos_token_id": 318}
            """);
        var rng = new Random(5);
        float[] Random(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
        var tensors = new List<Loom.Inference.Formats.TensorData>
        {
            Loom.Inference.Formats.TensorData.F32("model.embed_tokens.weight", [vocab, hidden], Random(vocab * hidden, 0.5f)),
            Loom.Inference.Formats.TensorData.F32("lm_head.weight", [vocab, hidden], Random(vocab * hidden, 0.1f)),
            Loom.Inference.Formats.TensorData.F32("model.norm.weight", [hidden], Enumerable.Repeat(1f, hidden).ToArray()),
        };
        for (var l = 0; l < layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add(Loom.Inference.Formats.TensorData.F32(p + "input_layernorm.weight", [hidden], Enumerable.Repeat(1f, hidden).ToArray()));
            tensors.Add(Loom.Inference.Formats.TensorData.F32(p + "post_attention_layernorm.weight", [hidden], Enumerable.Repeat(1f, hidden).ToArray()));
            foreach (var m in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
                tensors.Add(Loom.Inference.Formats.TensorData.F32(p + $"self_attn.{m}.weight", [hidden, hidden], Random(hidden * hidden, 0.05f)));
            tensors.Add(Loom.Inference.Formats.TensorData.F32(p + "mlp.gate_proj.weight", [inter, hidden], Random(inter * hidden, 0.05f)));
            tensors.Add(Loom.Inference.Formats.TensorData.F32(p + "mlp.up_proj.weight", [inter, hidden], Random(inter * hidden, 0.05f)));
            tensors.Add(Loom.Inference.Formats.TensorData.F32(p + "mlp.down_proj.weight", [hidden, inter], Random(inter * hidden, 0.05f)));
        }
        Loom.Inference.Formats.SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        return dir;
    }
}

public class DisconnectTests(KestrelChatModelFactory factory) : IClassFixture<KestrelChatModelFactory>
{
    [Fact]
    public async Task DisconnectingClientCancelsTheRequest()
    {
        var tenant = await factory.CreateTenantAsync($"disconnect-{Guid.NewGuid():N}");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        using var cts = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(ChatCompletionsTests.Chat(maxTokens: 2000, temperature: 1, stream: true)),
        };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        var buffer = new byte[64];
        Assert.True(await stream.ReadAsync(buffer, cts.Token) > 0);
        cts.Cancel();
        response.Dispose();

        // The engine stops early: the recorded completion is far shorter than the 2,000 tokens asked for,
        // and the engine is free for the next request.
        JsonElement row = default;
        for (var i = 0; i < 50; i++)
        {
            var data = JsonDocument.Parse(await client.GetStringAsync("/v1/usage")).RootElement.GetProperty("data");
            if (data.GetArrayLength() > 0) { row = data[0]; break; }
            await Task.Delay(100);
        }
        Assert.Equal(JsonValueKind.Object, row.ValueKind);
        Assert.True(row.GetProperty("completion_tokens").GetInt64() < 1000, row.ToString());
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync("/v1/chat/completions", ChatCompletionsTests.Chat(maxTokens: 2))).StatusCode);
    }

}
