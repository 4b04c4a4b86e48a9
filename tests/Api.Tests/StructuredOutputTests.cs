using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>response_format on chat and text completions, through the whole stack on the tiny test model (random
/// weights: without the constraint its output is nowhere near JSON, so every valid answer here is the mask's doing).</summary>
public class StructuredOutputTests(AdapterLoomFactory factory) : IClassFixture<AdapterLoomFactory>
{
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");

    private const string Person = """
        {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":12},"age":{"type":"integer"},
         "role":{"enum":["admin","user","guest"]},"tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3},
         "active":{"type":["boolean","null"]}},"required":["name","age","role"],"additionalProperties":false}
        """;

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"structured-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static object Request(string model, object format, long seed, int maxTokens = 140, double temperature = 1, bool stream = false) => new
    {
        model, messages = new[] { new { role = "user", content = "Describe a person as JSON." } },
        response_format = format, seed, max_tokens = maxTokens, temperature, stream,
    };

    private static object SchemaFormat(string schema) => new { type = "json_schema", json_schema = new { name = "person", strict = true, schema = JsonDocument.Parse(schema).RootElement } };

    private static (string Content, string Finish) Answer(JsonElement body) =>
        (body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!, body.GetProperty("choices")[0].GetProperty("finish_reason").GetString()!);

    private static void AssertValid(string content, string schema)
    {
        var s = JsonDocument.Parse(schema).RootElement;
        JsonElement value;
        try { value = JsonDocument.Parse(content).RootElement; }
        catch (JsonException e) { Assert.Fail($"not JSON ({e.Message}): {content}"); return; }
        Assert.True(SchemaCheck.Validates(value, s, s, out var why), $"{why}: {content}");
    }

    [Fact]
    public async Task JsonSchemaOutputAlwaysParsesAndValidatesOnTheBaseModelAndAnAdapter()
    {
        var client = await ClientAsync();
        var form = new MultipartFormDataContent { { new StringContent("structured-lora"), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", form)).StatusCode);

        int stopped = 0, total = 0;
        var seen = new List<string>();
        foreach (var model in new[] { ChatModelFactory.ModelName, "structured-lora" })
            for (int seed = 1; seed <= 4; seed++)
            {
                var response = await client.PostAsJsonAsync("/v1/chat/completions", Request(model, SchemaFormat(Person), seed));
                var raw = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.OK, raw);
                var (content, finish) = Answer(JsonDocument.Parse(raw).RootElement);
                total++;
                seen.Add($"{finish}: {content}");
                if (finish != "stop") continue;
                stopped++;
                AssertValid(content, Person);
            }
        Assert.True(stopped * 2 >= total, $"only {stopped} of {total} answers completed within max_tokens:\n{string.Join("\n", seen)}");
    }

    [Fact]
    public async Task JsonObjectModeAndTextCompletionsAndStreamingGiveJson()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Request(ChatModelFactory.ModelName, new { type = "json_object" }, seed: 3, temperature: 0.7))).Content.ReadAsStringAsync()).RootElement;
        var (content, finish) = Answer(body);
        if (finish == "stop") Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(content).RootElement.ValueKind);
        else Assert.StartsWith("{", content.TrimStart());

        var legacy = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/completions", new
        {
            model = ChatModelFactory.ModelName, prompt = "Colour:", max_tokens = 40, temperature = 1, seed = 5,
            response_format = SchemaFormat("""{"type":"object","properties":{"colour":{"enum":["red","green"]}},"required":["colour"]}"""),
        })).Content.ReadAsStringAsync()).RootElement;
        var text = legacy.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal("stop", legacy.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var colour = JsonDocument.Parse(text).RootElement.GetProperty("colour").GetString();
        Assert.Contains(colour, new[] { "red", "green" });

        var stream = await ChatCompletionsTests.ReadSseAsync(await client.PostAsJsonAsync("/v1/chat/completions",
            Request(ChatModelFactory.ModelName, SchemaFormat(Person), seed: 2, stream: true)));
        var streamed = string.Concat(stream.Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        var plain = Answer(JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Request(ChatModelFactory.ModelName, SchemaFormat(Person), seed: 2))).Content.ReadAsStringAsync()).RootElement);
        Assert.Equal(plain.Content, streamed);
        if (plain.Finish == "stop") AssertValid(streamed, Person);
    }

    [Fact]
    public async Task ASchemaThatCannotFitInMaxTokensEndsWithLengthAndIncompleteJson()
    {
        var client = await ClientAsync();
        const string schema = """{"const":"a sentence far longer than the few tokens this request allows the model to write"}""";
        var (content, finish) = Answer(JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Request(ChatModelFactory.ModelName, SchemaFormat(schema), seed: 1, maxTokens: 4))).Content.ReadAsStringAsync()).RootElement);
        Assert.Equal("length", finish);
        const string written = "\"a sentence far longer than the few tokens this request allows the model to write\"";
        Assert.NotEmpty(content);
        Assert.True(written.StartsWith(content, StringComparison.Ordinal), $"not a prefix of the constant: [{content}]"); // a prefix of the only value allowed
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(content));
        // With room, the same request writes the constant exactly.
        var full = Answer(JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Request(ChatModelFactory.ModelName, SchemaFormat(schema), seed: 1, maxTokens: 100))).Content.ReadAsStringAsync()).RootElement);
        Assert.Equal((written, "stop"), full);
    }

    [Fact]
    public async Task ConstrainedAndFreeRequestsShareABatchWithoutTouchingEachOther()
    {
        var client = await ClientAsync();
        object Free() => new { model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = "Define: harbor" } }, max_tokens = 24, temperature = 0 };
        var alone = await (await client.PostAsJsonAsync("/v1/chat/completions", Free())).Content.ReadAsStringAsync();
        var tasks = Enumerable.Range(0, 6).Select(i => i % 2 == 0
            ? client.PostAsJsonAsync("/v1/chat/completions", Free())
            : client.PostAsJsonAsync("/v1/chat/completions", Request(ChatModelFactory.ModelName, SchemaFormat(Person), seed: i))).ToList();
        var answers = await Task.WhenAll(tasks.Select(async t => JsonDocument.Parse(await (await t).Content.ReadAsStringAsync()).RootElement));
        for (int i = 0; i < answers.Length; i++)
        {
            var (content, finish) = Answer(answers[i]);
            if (i % 2 == 0) Assert.Equal(Answer(JsonDocument.Parse(alone).RootElement).Content, content);
            else if (finish == "stop") AssertValid(content, Person);
        }
    }

    [Fact]
    public async Task LogitBiasForcesATokenThroughTheApi()
    {
        var client = await ClientAsync();
        object Ask(object? bias) => new { model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 5, temperature = 0, logprobs = true, logit_bias = bias };
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Ask(null))).Content.ReadAsStringAsync()).RootElement;
        var firstPlain = plain.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content")[0].GetProperty("token").GetString();
        // Bias a token the greedy answer did not start with: it is chosen at every step.
        var tokens = plain.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content");
        var forced = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Ask(new Dictionary<string, int> { ["300"] = 100 }))).Content.ReadAsStringAsync()).RootElement;
        var forcedTokens = forced.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray().Select(t => t.GetProperty("token").GetString()).ToList();
        Assert.Equal(5, forcedTokens.Count);
        Assert.Single(forcedTokens.Distinct());
        Assert.NotEqual(firstPlain, forcedTokens[0]);
        Assert.True(tokens.GetArrayLength() > 0);
    }
}
