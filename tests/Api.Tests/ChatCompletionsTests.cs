using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Loom.Api.Tests;

public class ChatCompletionsTests(ChatModelFactory factory) : IClassFixture<ChatModelFactory>
{
    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"chat-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    internal static object Chat(int maxTokens = 12, double temperature = 0, long seed = 7, bool stream = false, object? extra = null) => new Dictionary<string, object?>
    {
        ["model"] = ChatModelFactory.ModelName,
        ["messages"] = new object[] { new { role = "system", content = "Be brief." }, new { role = "user", content = "Define: harbor" } },
        ["max_tokens"] = maxTokens, ["temperature"] = temperature, ["seed"] = seed, ["stream"] = stream,
    }.Concat(extra is null ? [] : JsonSerializer.SerializeToElement(extra).EnumerateObject().Select(p => KeyValuePair.Create(p.Name, (object?)p.Value)))
     .ToDictionary();

    internal static async Task<List<JsonElement>> ReadSseAsync(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", body);
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        return events.Where(e => e != "data: [DONE]").Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.Clone()).ToList();
    }

    [Fact]
    public async Task ChatCompletionHasOpenAisShape()
    {
        var client = await ClientAsync();
        var response = await client.PostAsJsonAsync("/v1/chat/completions", Chat());
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToString());
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        Assert.Equal(ChatModelFactory.ModelName, body.GetProperty("model").GetString());
        Assert.True(body.GetProperty("created").GetInt64() > 1_700_000_000);
        var choice = Assert.Single(body.GetProperty("choices").EnumerateArray());
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Contains(choice.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        var usage = body.GetProperty("usage");
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 5);
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 12);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task StreamReassemblesToTheSameTextAndUsage()
    {
        var client = await ClientAsync();
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 20))).Content.ReadAsStringAsync()).RootElement;
        var expected = plain.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

        var response = await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 20, stream: true, extra: new { stream_options = new { include_usage = true } }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var chunks = await ReadSseAsync(response);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());

        var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).ToList();
        var text = string.Concat(withChoices.Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.Equal(expected, text);
        Assert.Equal(plain.GetProperty("choices")[0].GetProperty("finish_reason").GetString(),
            withChoices[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(withChoices[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));

        // include_usage: every chunk has "usage" (null), and a final chunk with no choices carries it.
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        Assert.Equal(plain.GetProperty("usage").ToString(), last.GetProperty("usage").ToString());
        Assert.All(chunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));

        // without include_usage the field is left out, as OpenAI does, and no usage chunk comes
        var bare = await ReadSseAsync(await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 20, stream: true)));
        Assert.All(bare, c => Assert.False(c.TryGetProperty("usage", out _), c.ToString()));
        Assert.All(bare, c => Assert.Equal(1, c.GetProperty("choices").GetArrayLength()));
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndNGivesDistinctChoices()
    {
        var client = await ClientAsync();
        async Task<string[]> Run() =>
            JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 16, temperature: 1.0, seed: 1234, extra: new { n = 3 }))).Content.ReadAsStringAsync())
                .RootElement.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!).ToArray();
        var first = await Run();
        Assert.Equal(3, first.Length);
        Assert.Equal(first, await Run());
        Assert.True(first.Distinct().Count() > 1, "three seeded choices at temperature 1 should not all be equal");
    }

    [Fact]
    public async Task MaxTokensEndsWithLength()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            new { model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = "hi" } }, max_completion_tokens = 3, temperature = 0 })).Content.ReadAsStringAsync()).RootElement;
        var choice = body.GetProperty("choices")[0];
        if (choice.GetProperty("finish_reason").GetString() == "length")
            Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        else
            Assert.True(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32() <= 3);
    }

    [Fact]
    public async Task IgnoreEosGeneratesExactlyMaxTokens()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 7, extra: new { ignore_eos = true }))).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(7, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task LogprobsCarryTopAlternatives()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 5, extra: new { logprobs = true, top_logprobs = 2 }))).Content.ReadAsStringAsync()).RootElement;
        var content = body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.NotEmpty(content);
        Assert.All(content, t =>
        {
            Assert.True(t.GetProperty("logprob").GetSingle() <= 0);
            var top = t.GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(2, top.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(top[0].GetProperty("logprob").GetSingle(), t.GetProperty("logprob").GetSingle(), 4);
        });
    }

    [Fact]
    public async Task UsageIsRecordedPerCompletion()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Chat(maxTokens: 6))).Content.ReadAsStringAsync()).RootElement;
        var usage = JsonDocument.Parse(await client.GetStringAsync("/v1/usage")).RootElement.GetProperty("data");
        var row = Assert.Single(usage.EnumerateArray());
        Assert.Equal(ChatModelFactory.ModelName, row.GetProperty("model").GetString());
        Assert.Equal(1, row.GetProperty("requests").GetInt32());
        Assert.Equal(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt64(), row.GetProperty("prompt_tokens").GetInt64());
        Assert.Equal(body.GetProperty("usage").GetProperty("completion_tokens").GetInt64(), row.GetProperty("completion_tokens").GetInt64());
    }

    public static TheoryData<string, string?, string?> BadRequests => new()
    {
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"temperature":5}""", "temperature", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", "temperature", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"max_tokens":-1}""", "max_tokens", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"max_tokens":100000000}""", "max_tokens", "context_length_exceeded" },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"n":"two"}""", "n", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"colour":"blue"}""", "colour", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}""", "stream_options", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}""", "stop", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"top_logprobs":3}""", "top_logprobs", null },
        { """{"model":"tiny-chat","messages":[]}""", "messages", null },
        { """{"model":"tiny-chat"}""", "messages", null },
        { """{"model":"tiny-chat","messages":[{"role":"wizard","content":"x"}]}""", "messages[0].role", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content[0]", null },
        { """{"messages":[{"role":"user","content":"x"}]}""", "model", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"frequency_penalty":3}""", "frequency_penalty", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"repetition_penalty":0}""", "repetition_penalty", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"logit_bias":{"abc":1}}""", "logit_bias", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"logit_bias":{"5":200}}""", "logit_bias", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"logit_bias":{"99999999":1}}""", "logit_bias", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}""", "response_format.type", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}}}""", "response_format.json_schema.name", null },
        { """{"model":"tiny-chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"string","pattern":"^a"}}}}""", "response_format.json_schema.schema", "invalid_json_schema" },
        { """[1,2]""", null, null },
        { """{"model": "tiny-chat", "messages": [""", null, null },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadRequestsAre400NamingTheParam(string body, string? param, string? code)
    {
        var client = await ClientAsync();
        var response = await client.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var error = await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.BadRequest, code);
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task PriorityHeaderIsValidated()
    {
        var client = await ClientAsync();
        using var ok = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat(maxTokens: 2)) };
        ok.Headers.Add("X-Loom-Priority", "batch");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(ok)).StatusCode);
        using var bad = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(Chat(maxTokens: 2)) };
        bad.Headers.Add("X-Loom-Priority", "asap");
        await ErrorAssert.IsEnvelopeAsync(await client.SendAsync(bad), HttpStatusCode.BadRequest, param: "X-Loom-Priority");
    }

    [Fact]
    public async Task PromptLongerThanTheContextIs400()
    {
        var client = await ClientAsync();
        var longText = string.Join(" ", Enumerable.Repeat("harbor", 400));
        var response = await client.PostAsJsonAsync("/v1/chat/completions", new { model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = longText } } });
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.BadRequest, "context_length_exceeded", "messages");
    }

    [Fact]
    public async Task UnknownModelIs404()
    {
        var client = await ClientAsync();
        var response = await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpt-9", messages = new[] { new { role = "user", content = "x" } } });
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.NotFound, "model_not_found", "model");
    }
}

public class TokenLimitTests(TightTokensChatModelFactory factory) : IClassFixture<TightTokensChatModelFactory>
{
    [Fact]
    public async Task TokensOverTheMinuteBudgetGet429()
    {
        var tenant = await factory.CreateTenantAsync($"tpm-{Guid.NewGuid():N}");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        var response = await client.PostAsJsonAsync("/v1/chat/completions",
            new { model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 100 });
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.TooManyRequests, "rate_limit_exceeded");
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Equal("tokens", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
    }
}
