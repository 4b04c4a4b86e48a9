using System.Net;
using System.Net.Http.Json;
using Loom.Cluster;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>The tiny chat model on an engine that holds one generation at a time.</summary>
public sealed class OnePlaceChatModelFactory : ChatModelFactory
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [.. base.Settings, new("Cluster:MaxGenerationsPerEngine", "1")];
}

/// <summary>
/// A full engine refuses a generation as retryable, streamed or not: a 503 with Retry-After in OpenAI's envelope (code
/// engine_unavailable) on every generating endpoint. A stream sends nothing before its first event, so a refusal before
/// it is the answer's status, not a 200 whose stream carries an error event.
/// </summary>
public sealed class EngineFullTests(OnePlaceChatModelFactory factory) : IClassFixture<OnePlaceChatModelFactory>
{
    public static TheoryData<string, bool> Endpoints => new()
    {
        { "/v1/chat/completions", true }, { "/v1/chat/completions", false },
        { "/v1/completions", true }, { "/v1/completions", false },
        { "/v1/responses", true }, { "/v1/responses", false },
    };

    private static object Body(string path, bool stream) => path switch
    {
        "/v1/chat/completions" => ChatCompletionsTests.Chat(maxTokens: 4, stream: stream),
        "/v1/completions" => new { model = ChatModelFactory.ModelName, prompt = "Hello", max_tokens = 4, stream },
        _ => new { model = ChatModelFactory.ModelName, input = "Hello", max_output_tokens = 4, stream, store = false },
    };

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task AFullEngineRefusesWithA503AndRetryAfter(string path, bool stream)
    {
        var tenant = await factory.CreateTenantAsync($"full-{Guid.NewGuid():N}");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        var admission = factory.Services.GetRequiredService<EngineAdmission>();

        // The engine's one place, taken as a generation takes it.
        using (var place = admission.TryEnter(ChatModelFactory.ModelName))
        {
            Assert.NotNull(place);
            using var refused = await client.PostAsJsonAsync(path, Body(path, stream));
            var error = await ErrorAssert.IsEnvelopeAsync(refused, HttpStatusCode.ServiceUnavailable, "engine_unavailable");
            Assert.Contains("try again", error.GetProperty("message").GetString());
            Assert.True(refused.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, $"Retry-After: {refused.Headers.RetryAfter}");
        }

        // With the place back, the same request is answered.
        using var answered = await client.PostAsJsonAsync(path, Body(path, stream));
        Assert.True(answered.StatusCode == HttpStatusCode.OK, await answered.Content.ReadAsStringAsync());
        Assert.Contains(stream ? "data: " : "\"usage\"", await answered.Content.ReadAsStringAsync());
        Assert.Equal(0, admission.Held(ChatModelFactory.ModelName));
    }
}
