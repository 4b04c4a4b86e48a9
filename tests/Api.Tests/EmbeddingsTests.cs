using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Loom.Api.Tests;

/// <summary>POST /v1/embeddings on the tiny golden model, against the PyTorch oracle's mean-pooled, L2-normalized
/// final hidden states (tests/golden/embeddings, from tests/reference/embedding_oracle.py), for the base model and
/// an adapter; and the request's bounds.</summary>
public class EmbeddingsTests(ChatModelFactory factory) : IClassFixture<ChatModelFactory>
{
    private static readonly string Root = ChatModelFactory.RepoRoot();
    private static readonly string AdapterDir = Path.Combine(Root, "tests", "golden", "lora", "llama3_scaled_bf16_r4");
    private static readonly JsonElement Golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "tests", "golden", "embeddings", "llama3_scaled_bf16.json"))).RootElement;

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"embeddings-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static async Task<JsonElement> OkAsync(HttpResponseMessage response)
    {
        var raw = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {raw}");
        return JsonDocument.Parse(raw).RootElement.Clone();
    }

    private static float[] Vector(JsonElement item) => item.GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray();

    /// <summary>Largest difference from the oracle's vector, over the vector's norm (1).</summary>
    private static void AssertClose(JsonElement expected, float[] actual, string what)
    {
        var e = expected.EnumerateArray().Select(x => x.GetDouble()).ToArray();
        Assert.Equal(e.Length, actual.Length);
        var worst = e.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst < 1e-4, $"{what}: worst difference {worst:E2}");
    }

    [Fact]
    public async Task TokenInputsMatchTheOracleForTheBaseModelAndAnAdapter()
    {
        var client = await ClientAsync();
        var inputs = Golden.GetProperty("inputs");
        var r = await OkAsync(await client.PostAsJsonAsync("/v1/embeddings", new { model = ChatModelFactory.ModelName, input = inputs }));
        Assert.Equal("list", r.GetProperty("object").GetString());
        var total = inputs.EnumerateArray().Sum(i => i.GetArrayLength());
        Assert.Equal(total, r.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        for (var i = 0; i < inputs.GetArrayLength(); i++)
        {
            Assert.Equal(i, r.GetProperty("data")[i].GetProperty("index").GetInt32());
            AssertClose(Golden.GetProperty("base")[i], Vector(r.GetProperty("data")[i]), $"base input {i}");
        }

        var form = new MultipartFormDataContent { { new StringContent("embed-lora"), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", form)).StatusCode);
        var a = await OkAsync(await client.PostAsJsonAsync("/v1/embeddings", new { model = "embed-lora", input = inputs }));
        Assert.Equal("embed-lora", a.GetProperty("model").GetString());
        for (var i = 0; i < inputs.GetArrayLength(); i++)
            AssertClose(Golden.GetProperty("with_adapter")[i], Vector(a.GetProperty("data")[i]), $"adapter input {i}");

        // The adapter is the tenant's own: another tenant's request for it is a 404.
        var other = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await other.PostAsJsonAsync("/v1/embeddings", new { model = "embed-lora", input = "x" }), HttpStatusCode.NotFound, "model_not_found");
    }

    [Fact]
    public async Task TextInputsAreUnitVectorsAndBase64CarriesTheSameFloats()
    {
        var client = await ClientAsync();
        var plain = await OkAsync(await client.PostAsJsonAsync("/v1/embeddings", new { model = ChatModelFactory.ModelName, input = new[] { "a harbor", "a boat" }, dimensions = 64 }));
        var encoded = await OkAsync(await client.PostAsJsonAsync("/v1/embeddings", new { model = ChatModelFactory.ModelName, input = new[] { "a harbor", "a boat" }, encoding_format = "base64" }));
        for (var i = 0; i < 2; i++)
        {
            var v = Vector(plain.GetProperty("data")[i]);
            Assert.Equal(64, v.Length);
            Assert.InRange(Math.Sqrt(v.Sum(x => (double)x * x)), 1 - 1e-5, 1 + 1e-5);
            var bytes = Convert.FromBase64String(encoded.GetProperty("data")[i].GetProperty("embedding").GetString()!);
            var decoded = Enumerable.Range(0, bytes.Length / 4).Select(k => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(k * 4))).ToArray();
            Assert.Equal(v, decoded);
        }
        Assert.NotEqual(Vector(plain.GetProperty("data")[0]), Vector(plain.GetProperty("data")[1]));
        var single = await OkAsync(await client.PostAsJsonAsync("/v1/embeddings", new { model = ChatModelFactory.ModelName, input = "a harbor" }));
        Assert.Equal(Vector(plain.GetProperty("data")[0]), Vector(single.GetProperty("data")[0]));
    }

    [Fact]
    public async Task BadRequestsAre400NamingTheParam()
    {
        var client = await ClientAsync();
        async Task Bad(string body, string? param, HttpStatusCode status = HttpStatusCode.BadRequest, string? code = null) =>
            await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/embeddings", new StringContent(body, Encoding.UTF8, "application/json")), status, code, param);
        await Bad("""{"model":"tiny-chat"}""", "input");
        await Bad("""{"model":"tiny-chat","input":""}""", "input");
        await Bad("""{"model":"tiny-chat","input":[]}""", "input");
        await Bad("""{"model":"tiny-chat","input":["a",""]}""", "input[1]");
        await Bad("""{"model":"tiny-chat","input":[5, 99999]}""", "input");
        await Bad("""{"model":"tiny-chat","input":[["a"]]}""", "input[0]");
        await Bad("""{"model":"tiny-chat","input":"a","dimensions":32}""", "dimensions");
        await Bad("""{"model":"tiny-chat","input":"a","encoding_format":"int8"}""", "encoding_format");
        await Bad("""{"model":"tiny-chat","input":"a","pooling":"cls"}""", "pooling");
        await Bad("""{"model":"nope","input":"a"}""", "model", HttpStatusCode.NotFound, "model_not_found");
        var tooLong = "[" + string.Join(",", Enumerable.Repeat(5, 300)) + "]";
        await Bad("""{"model":"tiny-chat","input":""" + tooLong + "}", "input", code: "context_length_exceeded");
        // A token-id prompt longer than the 2,048-item bound is judged by its length in tokens, not as a count of inputs.
        var farTooLong = "[" + string.Join(",", Enumerable.Repeat(5, 3000)) + "]";
        var error = await ErrorAssertAsync("""{"model":"tiny-chat","input":""" + farTooLong + "}", "input", "context_length_exceeded");
        Assert.Contains("maximum context length", error.GetProperty("message").GetString());
        Assert.Contains("3000 tokens", error.GetProperty("message").GetString());
        var tooMany = "[" + string.Join(",", Enumerable.Repeat("\"a\"", 2049)) + "]";
        var countError = await ErrorAssertAsync("""{"model":"tiny-chat","input":""" + tooMany + "}", "input", null);
        Assert.Contains("at most 2048 items", countError.GetProperty("message").GetString());
        Assert.Equal(JsonValueKind.Null, countError.GetProperty("code").ValueKind);

        async Task<JsonElement> ErrorAssertAsync(string body, string param, string? code) =>
            await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/embeddings", new StringContent(body, Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest, code, param);
    }
}
