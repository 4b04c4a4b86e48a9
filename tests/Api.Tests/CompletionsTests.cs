using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Loom.Api.Tests;

public class CompletionsTests(ChatModelFactory factory) : IClassFixture<ChatModelFactory>
{
    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"cmpl-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    [Fact]
    public async Task TextCompletionStreamedEqualsPlain()
    {
        var client = await ClientAsync();
        var request = new Dictionary<string, object> { ["model"] = ChatModelFactory.ModelName, ["prompt"] = "harbor (noun):", ["max_tokens"] = 10, ["temperature"] = 0 };
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/completions", request)).Content.ReadAsStringAsync()).RootElement;
        Assert.StartsWith("cmpl-", plain.GetProperty("id").GetString());
        Assert.Equal("text_completion", plain.GetProperty("object").GetString());
        var expected = plain.GetProperty("choices")[0].GetProperty("text").GetString();

        request["stream"] = true;
        var chunks = await ChatCompletionsTests.ReadSseAsync(await client.PostAsJsonAsync("/v1/completions", request));
        Assert.Equal(expected, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.NotEqual(JsonValueKind.Null, chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
    }

    [Fact]
    public async Task EchoAndLegacyLogprobs()
    {
        var client = await ClientAsync();
        var body = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/completions",
            new { model = ChatModelFactory.ModelName, prompt = "cat (noun):", max_tokens = 4, temperature = 0, echo = true, logprobs = 2 })).Content.ReadAsStringAsync()).RootElement;
        var choice = body.GetProperty("choices")[0];
        Assert.StartsWith("cat (noun):", choice.GetProperty("text").GetString());
        var lp = choice.GetProperty("logprobs");
        var n = lp.GetProperty("tokens").GetArrayLength();
        Assert.True(n >= 1);
        Assert.Equal(n, lp.GetProperty("token_logprobs").GetArrayLength());
        Assert.Equal(n, lp.GetProperty("text_offset").GetArrayLength());
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.InRange(t.EnumerateObject().Count(), 1, 2));
    }

    [Theory]
    [InlineData("""{"model":"tiny-chat"}""", "prompt")]
    [InlineData("""{"model":"tiny-chat","prompt":["a","b"]}""", "prompt")]
    [InlineData("""{"model":"tiny-chat","prompt":"x","suffix":"y"}""", "suffix")]
    [InlineData("""{"model":"tiny-chat","prompt":"x","logprobs":9}""", "logprobs")]
    [InlineData("""{"model":"tiny-chat","prompt":"x","max_tokens":0}""", "max_tokens")]
    public async Task BadRequestsAre400(string body, string param)
    {
        var client = await ClientAsync();
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest);
        Assert.Equal(param, error.GetProperty("param").GetString());
    }
}
