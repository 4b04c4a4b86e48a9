using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Api.Adapters;
using Loom.Inference.Engine;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Adapter folders unpacked for the engine live in the configured data directory and are checked against the recorded hash before serving.</summary>
public class AdapterCacheTests(AdapterLoomFactory factory) : IClassFixture<AdapterLoomFactory>
{
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");

    [Fact]
    public async Task ATamperedFolderIsUnpackedAgainBeforeItIsServed()
    {
        var tenant = await factory.CreateTenantAsync($"cache-{Guid.NewGuid():N}");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        var form = new MultipartFormDataContent { { new StringContent("cached"), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        // A config no other test uploads, so this adapter's folder is its own.
        var config = File.ReadAllText(Path.Combine(AdapterDir, "adapter_config.json")).Replace("\"lora_alpha\": 8", "\"lora_alpha\": 7");
        form.Add(new ByteArrayContent(Encoding.UTF8.GetBytes(config)), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", form)).StatusCode);

        async Task<string> AskAsync()
        {
            var response = await client.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(new
            {
                model = "cached", messages = new[] { new { role = "user", content = "Define: harbor" } }, max_tokens = 3, temperature = 0, logprobs = true,
            }), Encoding.UTF8, "application/json"));
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, body);
            return JsonDocument.Parse(body).RootElement.GetProperty("choices").ToString();
        }
        var first = await AskAsync();

        var adapter = await factory.InTenantAsync(tenant.Id, db => db.Adapters.AsNoTracking().SingleAsync(a => a.Name == "cached"));
        var folder = Path.Combine(factory.BlobRoot + "-adapters", adapter.BlobSha256);
        Assert.True(Directory.Exists(folder), $"expected the unpacked folder at {folder}");

        // Someone changes the weights on disk while the engine has forgotten the adapter (a restart, an eviction).
        factory.Services.GetRequiredService<IInferenceEngine>().UnregisterAdapter(EngineAdapters.EngineId(adapter));
        var weights = Path.Combine(folder, "adapter_model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        for (var i = bytes.Length - 64; i < bytes.Length; i += 2) bytes[i + 1] ^= 0x40; // high bytes of the last bf16 values
        File.WriteAllBytes(weights, bytes);
        Assert.NotEqual(adapter.BlobSha256, await AdapterBlob.HashFolderAsync(folder, CancellationToken.None));

        Assert.Equal(first, await AskAsync());
        Assert.Equal(adapter.BlobSha256, await AdapterBlob.HashFolderAsync(folder, CancellationToken.None));
    }
}
