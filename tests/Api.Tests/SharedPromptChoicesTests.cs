using System.Net.Http.Json;
using System.Text.Json;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary><c>n &gt; 1</c> computes the prompt once: with prefix caching (on in these tests) the first choice computes it and
/// the others share its full KV blocks (the engine's counters show the prompt's tokens computed once, not n times, but
/// for each choice's last partial block and last token), and the choices give the texts of independent seeded
/// requests.</summary>
public class SharedPromptChoicesTests(ChatModelFactory factory) : IClassFixture<ChatModelFactory>
{
    private IInferenceEngine Engine => factory.Services.GetRequiredService<IInferenceEngine>();

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"choices-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static async Task<JsonElement> OkAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private static string[] Texts(JsonElement completion, bool chat) => [.. completion.GetProperty("choices").EnumerateArray()
        .OrderBy(c => c.GetProperty("index").GetInt32())
        .Select(c => chat ? c.GetProperty("message").GetProperty("content").GetString()! : c.GetProperty("text").GetString()!)];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheChoicesPrefillThePromptOnceAndMatchIndependentRequests(bool chat)
    {
        const int n = 4;
        var client = await ClientAsync();
        var path = chat ? "/v1/chat/completions" : "/v1/completions";
        object Body(int choices, long seed) => chat
            ? ChatCompletionsTests.Chat(maxTokens: 12, temperature: 1.0, seed: seed, extra: new { n = choices, ignore_eos = true })
            : new { model = ChatModelFactory.ModelName, prompt = "A harbor is a sheltered place where boats and ships", max_tokens = 12, temperature = 1.0, seed, n = choices, ignore_eos = true };

        var before = Engine.GetMetrics();
        var shared = await OkAsync(await client.PostAsJsonAsync(path, Body(n, 1234)));
        var after = Engine.GetMetrics();

        var usage = shared.GetProperty("usage");
        int prompt = usage.GetProperty("prompt_tokens").GetInt32(), completion = usage.GetProperty("completion_tokens").GetInt32();
        Assert.Equal(n * 12, completion);
        // The first choice computes the prompt; the others wait for its full blocks (a pool page is one hidden-size
        // row, so a block holds hidden / kv-width positions) and compute only the rest of the prompt, down to its last
        // token, whose logits they sample from; then each feeds back every sampled token but the last. n separate
        // prefills would run n * prompt + n * 11.
        var config = Engine.Model.Config;
        int blockTokens = config.HiddenSize / config.KvDim, inBlocks = (prompt - 1) / blockTokens * blockTokens;
        Assert.True(inBlocks >= prompt / 2, $"the prompt ({prompt} tokens) should be mostly in full blocks of {blockTokens}");
        Assert.Equal(prompt + (n - 1) * (prompt - inBlocks) + n * 11, after.Loop.TokensComputed - before.Loop.TokensComputed);
        Assert.Equal(n - 1, after.Prefix.Hits - before.Prefix.Hits);
        Assert.Equal((n - 1) * inBlocks, after.Prefix.TokensReused - before.Prefix.TokensReused);

        // The same texts as n independent requests seeded as the choices are (seed + index), computed by another
        // tenant, whose requests never see this tenant's cached KV (its later requests do see its first one's).
        var other = await ClientAsync();
        var alone = new List<string>();
        for (var i = 0; i < n; i++)
        {
            var one = await OkAsync(await other.PostAsJsonAsync(path, Body(1, 1234 + i)));
            alone.Add(Texts(one, chat)[0]);
            // the prompt is counted once, as for one choice (OpenAI's usage), not once per choice
            Assert.Equal(prompt, one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        }
        var choices = Texts(shared, chat);
        Assert.Equal(alone, choices);
        Assert.True(choices.Distinct().Count() > 1, "seeded choices at temperature 1 should differ");
    }

    [Fact]
    public async Task StreamedChoicesInterleaveAndEachEndsOnce()
    {
        const int n = 3;
        var client = await ClientAsync();
        var plain = Texts(await OkAsync(await client.PostAsJsonAsync("/v1/chat/completions",
            ChatCompletionsTests.Chat(maxTokens: 10, temperature: 1.0, seed: 99, extra: new { n, ignore_eos = true }))), chat: true);
        var chunks = await ChatCompletionsTests.ReadSseAsync(await client.PostAsJsonAsync("/v1/chat/completions",
            ChatCompletionsTests.Chat(maxTokens: 10, temperature: 1.0, seed: 99, stream: true, extra: new { n, ignore_eos = true })));
        var choices = chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray()).ToList();
        for (var i = 0; i < n; i++)
        {
            var mine = choices.Where(c => c.GetProperty("index").GetInt32() == i).ToList();
            Assert.Equal("assistant", mine[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.Equal("length", Assert.Single(mine, c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String).GetProperty("finish_reason").GetString());
            Assert.Equal(plain[i], string.Concat(mine.Select(c => c.GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : "")));
        }
    }
}
