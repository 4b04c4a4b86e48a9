using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Loom.Api.Tests;

public sealed class AdapterLoomFactory : ChatModelFactory
{
    public string BlobRoot { get; } = Path.Combine(Path.GetTempPath(), $"loom-blobs-{Guid.NewGuid():N}");
    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        base.Settings.Append(new("Loom:Blobs:Root", BlobRoot)).Append(new("Api:AdapterCacheDirectory", BlobRoot + "-adapters"));
}

public class AdaptersTests(AdapterLoomFactory factory) : IClassFixture<AdapterLoomFactory>
{
    // A rank-4 PEFT adapter written by the PyTorch oracle for the model the factory serves.
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");
    private static readonly string OtherModelAdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama_gqa_tied_r8");

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"adapters-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static MultipartFormDataContent Form(string name, string? dir = null, string baseModel = ChatModelFactory.ModelName,
        byte[]? config = null, byte[]? weights = null)
    {
        dir ??= AdapterDir;
        var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(baseModel), "base_model" } };
        form.Add(new ByteArrayContent(config ?? File.ReadAllBytes(Path.Combine(dir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(weights ?? File.ReadAllBytes(Path.Combine(dir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        return form;
    }

    private static MultipartFormDataContent ArchiveForm(string name, byte[] archive, string fileName)
    {
        var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(archive) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } }, "file", fileName);
        return form;
    }

    private static async Task<int> AdapterCountAsync(HttpClient client) =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/adapters")).RootElement.GetProperty("data").GetArrayLength();

    [Fact]
    public async Task UploadListGetDelete()
    {
        var client = await ClientAsync();
        var response = await client.PostAsync("/v1/adapters", Form("my-lora"));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.StatusCode == HttpStatusCode.Created, body.ToString());
        var id = body.GetProperty("id").GetString()!;
        Assert.StartsWith("adapter-", id);
        Assert.Equal("my-lora", body.GetProperty("name").GetString());
        Assert.Equal(ChatModelFactory.ModelName, body.GetProperty("base_model").GetString());
        Assert.Equal(4, body.GetProperty("rank").GetInt32());
        Assert.Equal(["q_proj", "k_proj", "gate_proj", "up_proj", "down_proj"], body.GetProperty("target_modules").EnumerateArray().Select(t => t.GetString()!).ToArray());

        Assert.Equal(1, await AdapterCountAsync(client));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/adapters/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/adapters/my-lora")).StatusCode);
        // The adapter is a model id for its tenant.
        Assert.Contains("my-lora", await client.GetStringAsync("/v1/models"));

        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/adapters/{id}")).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/adapters/{id}"), HttpStatusCode.NotFound, "adapter_not_found");
        Assert.Equal(0, await AdapterCountAsync(client));
    }

    [Fact]
    public async Task ZipAndTarGzArchivesAreAccepted()
    {
        var client = await ClientAsync();
        var zip = new MemoryStream();
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var f in new[] { "adapter_config.json", "adapter_model.safetensors" })
                archive.CreateEntryFromFile(Path.Combine(AdapterDir, f), $"my-adapter/{f}");
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", ArchiveForm("zipped", zip.ToArray(), "adapter.zip"))).StatusCode);

        var tgz = new MemoryStream();
        using (var gz = new GZipStream(tgz, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz))
            foreach (var f in new[] { "adapter_config.json", "adapter_model.safetensors" })
                tar.WriteEntry(Path.Combine(AdapterDir, f), f);
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", ArchiveForm("tarred", tgz.ToArray(), "adapter.tar.gz"))).StatusCode);
        Assert.Equal(2, await AdapterCountAsync(client));
    }

    [Fact]
    public async Task BadAdaptersAreRefusedAndNothingIsStored()
    {
        var client = await ClientAsync();
        var blobsBefore = Directory.Exists(factory.BlobRoot) ? Directory.EnumerateFiles(factory.BlobRoot, "*", SearchOption.AllDirectories).Count() : 0;

        // An adapter for another base model (different shapes): the error names the tensor.
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form("wrong-base", OtherModelAdapterDir)), HttpStatusCode.BadRequest, "invalid_adapter", "file");
        Assert.Contains("lora_", error.GetProperty("message").GetString());

        // Truncated weights.
        var weights = File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"));
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form("truncated", weights: weights[..(weights.Length / 2)])), HttpStatusCode.BadRequest, "invalid_adapter");

        // Rank above the limit, modules_to_save, unknown module.
        var config = File.ReadAllText(Path.Combine(AdapterDir, "adapter_config.json"));
        foreach (var (bad, name) in new[]
                 {
                     (config.Replace("\"r\": 4", "\"r\": 4096"), "rank"),
                     (config.Replace("\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]"), "saves"),
                     (config.Replace("\"q_proj\",", "\"q_proj\", \"wizard_proj\","), "unknown"),
                     ("{ not json", "garbage"),
                 })
            await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form(name, config: Encoding.UTF8.GetBytes(bad))), HttpStatusCode.BadRequest, "invalid_adapter");

        // Missing file, bad name, unknown base model, corrupt archive.
        var missing = new MultipartFormDataContent { { new StringContent("x"), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        missing.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", missing), HttpStatusCode.BadRequest, param: "adapter_model.safetensors");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form("../etc/passwd")), HttpStatusCode.BadRequest, param: "name");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form("ok-name", baseModel: "no-such-base")), HttpStatusCode.NotFound, "model_not_found", "base_model");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("corrupt", [1, 2, 3, 4], "a.zip")), HttpStatusCode.BadRequest, param: "file");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("corrupt", [0x1f, 0x8b, 8, 0, 9, 9], "a.tar.gz")), HttpStatusCode.BadRequest, param: "file");

        Assert.Equal(0, await AdapterCountAsync(client));
        var blobsAfter = Directory.Exists(factory.BlobRoot) ? Directory.EnumerateFiles(factory.BlobRoot, "*", SearchOption.AllDirectories).Count() : 0;
        Assert.Equal(blobsBefore, blobsAfter);
    }

    [Fact]
    public async Task ChatWithTheAdapterByNameAppliesIt()
    {
        var client = await ClientAsync();
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", Form("chat-lora"))).StatusCode);

        async Task<JsonElement> Ask(string model)
        {
            var response = await client.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(new
            {
                model, messages = new[] { new { role = "user", content = "Define: harbor" } }, max_tokens = 4, temperature = 0, logprobs = true, top_logprobs = 1,
            }), Encoding.UTF8, "application/json"));
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
            return body;
        }
        var viaBase = await Ask(ChatModelFactory.ModelName);
        var viaAdapter = await Ask("chat-lora");
        Assert.Equal("chat-lora", viaAdapter.GetProperty("model").GetString());
        // The adapter changes the model's distribution: the first token's log-probability differs.
        float First(JsonElement b) => b.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content")[0].GetProperty("logprob").GetSingle();
        Assert.NotEqual(First(viaBase), First(viaAdapter));
        // Asking again gives the same answer (the engine keeps the adapter registered). The second ask starts from the
        // first one's cached prompt blocks (prefix caching, on in these tests, keyed by the adapter too); on AVX-512 the
        // packed matmul's result for a position depends on its place in its prefill chunk, so the log-probability equals
        // the recomputed one within float32 tolerance, not bit for bit (decision 012).
        var again = await Ask("chat-lora");
        string Text(JsonElement b) => b.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(Text(viaAdapter), Text(again));
        Assert.True(Math.Abs(First(viaAdapter) - First(again)) <= 1e-4, $"first token's logprob {First(again)} again, {First(viaAdapter)} before");

        // Usage is recorded under the adapter's name.
        Assert.Contains("chat-lora", await client.GetStringAsync("/v1/usage"));

        // Deleted: the name no longer resolves.
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync("/v1/adapters/chat-lora")).StatusCode);
        var gone = await client.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(new
        {
            model = "chat-lora", messages = new[] { new { role = "user", content = "x" } },
        }), Encoding.UTF8, "application/json"));
        await ErrorAssert.IsEnvelopeAsync(gone, HttpStatusCode.NotFound, "model_not_found");
    }

    [Fact]
    public async Task EqualAdaptersShareOneContentAddressedBlob()
    {
        var client = await ClientAsync();
        // A weight file no other test uploads, so this test's blob count is its own.
        var config = File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"));
        var weights = File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"));
        config = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(config).Replace("\"lora_alpha\": 8", "\"lora_alpha\": 9"));
        int Blobs() => Directory.Exists(factory.BlobRoot) ? Directory.EnumerateFiles(factory.BlobRoot, "*", SearchOption.AllDirectories).Count() : 0;
        var before = Blobs();
        var first = JsonDocument.Parse(await (await client.PostAsync("/v1/adapters", Form("same-1", config: config, weights: weights))).Content.ReadAsStringAsync()).RootElement;
        var second = JsonDocument.Parse(await (await client.PostAsync("/v1/adapters", Form("same-2", config: config, weights: weights))).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(first.GetProperty("bytes").GetInt64(), second.GetProperty("bytes").GetInt64());
        Assert.Equal(before + 1, Blobs());
        // Deleting one keeps the blob the other still uses: it can still be served.
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync("/v1/adapters/same-1")).StatusCode);
        var response = await client.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(new
        {
            model = "same-2", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 2,
        }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task DuplicateNamesConflict()
    {
        var client = await ClientAsync();
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", Form("twice"))).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form("twice")), HttpStatusCode.Conflict, "adapter_exists", "name");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", Form(ChatModelFactory.ModelName)), HttpStatusCode.Conflict, "name_taken", "name");
        // Another tenant may use the same name.
        Assert.Equal(HttpStatusCode.Created, (await (await ClientAsync()).PostAsync("/v1/adapters", Form("twice"))).StatusCode);
    }

    [Fact]
    public async Task OtherTenantGets404ForEveryAdapterEndpoint()
    {
        var a = await ClientAsync();
        var b = await ClientAsync();
        var id = JsonDocument.Parse(await (await a.PostAsync("/v1/adapters", Form("private-lora"))).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync($"/v1/adapters/{id}"), HttpStatusCode.NotFound, "adapter_not_found");
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync("/v1/adapters/private-lora"), HttpStatusCode.NotFound, "adapter_not_found");
        await ErrorAssert.IsEnvelopeAsync(await b.DeleteAsync($"/v1/adapters/{id}"), HttpStatusCode.NotFound, "adapter_not_found");
        Assert.Equal(0, await AdapterCountAsync(b));
        Assert.DoesNotContain("private-lora", await b.GetStringAsync("/v1/models"));
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync("/v1/models/private-lora"), HttpStatusCode.NotFound, "model_not_found");
        Assert.Equal(HttpStatusCode.OK, (await a.GetAsync($"/v1/adapters/{id}")).StatusCode);
    }
}
