using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Loom.Api.Completions;
using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>The tiny chat model with a context of 2,048 positions (its weights are random, so any length serves),
/// room for the tool descriptions in the system prompt.</summary>
public class LongContextChatModelFactory : ChatModelFactory
{
    protected override string CreateModelDir()
    {
        var dir = base.CreateModelDir();
        var path = Path.Combine(dir, "config.json");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        config["max_position_embeddings"] = 2048;
        File.WriteAllText(path, config.ToJsonString());
        return dir;
    }
}

/// <summary>Tool calling on chat completions through the whole stack on the tiny test model (random weights, so every
/// well-formed call is the constrained decoder's doing), and the parsing of free text with calls in it.</summary>
public class ToolCallingTests(LongContextChatModelFactory factory) : IClassFixture<LongContextChatModelFactory>
{
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"enum":["Oslo","Lima","Pune"]},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";
    private const string TimeSchema = """{"type":"object","properties":{"zone":{"type":"string","maxLength":5}},"required":["zone"]}""";

    private static readonly object[] Tools =
    [
        new { type = "function", function = new { name = "get_weather", description = "Weather in a city", parameters = JsonDocument.Parse(WeatherSchema).RootElement } },
        new { type = "function", function = new { name = "get_time", parameters = JsonDocument.Parse(TimeSchema).RootElement } },
    ];

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"tools-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static object Ask(object? toolChoice, long seed, bool stream = false, bool parallel = true, object[]? messages = null) => new
    {
        model = ChatModelFactory.ModelName, messages = messages ?? [new { role = "user", content = "Weather in Oslo?" }],
        tools = Tools, tool_choice = toolChoice, parallel_tool_calls = parallel, max_tokens = 300, temperature = 1, seed, stream,
    };

    private static void AssertValidCall(JsonElement call)
    {
        Assert.StartsWith("call_", call.GetProperty("id").GetString());
        Assert.Equal("function", call.GetProperty("type").GetString());
        var name = call.GetProperty("function").GetProperty("name").GetString();
        var schema = JsonDocument.Parse(name == "get_weather" ? WeatherSchema : name == "get_time" ? TimeSchema : throw new Xunit.Sdk.XunitException($"unknown function {name}")).RootElement;
        var args = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!).RootElement;
        Assert.True(SchemaCheck.Validates(args, schema, schema, out var why), $"{name}: {why}: {args}");
    }

    [Fact]
    public async Task RequiredAndNamedToolChoicesAnswerWithValidCalls()
    {
        var client = await ClientAsync();
        int calls = 0, answers = 0;
        var cut = new List<string>();
        for (int seed = 1; seed <= 4; seed++)
        {
            var raw = await (await client.PostAsJsonAsync("/v1/chat/completions", Ask("required", seed))).Content.ReadAsStringAsync();
            Assert.True(JsonDocument.Parse(raw).RootElement.TryGetProperty("choices", out var choices), raw);
            var choice = choices[0];
            answers++;
            if (choice.GetProperty("finish_reason").GetString() != "tool_calls") { Assert.Equal("length", choice.GetProperty("finish_reason").GetString()); cut.Add(choice.GetProperty("message").GetProperty("content").GetString()!); continue; }
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("message").GetProperty("content").ValueKind);
            foreach (var call in choice.GetProperty("message").GetProperty("tool_calls").EnumerateArray()) { AssertValidCall(call); calls++; }
        }
        Assert.True(calls >= answers / 2, $"only {calls} calls in {answers} answers; cut short: {string.Join("\n", cut)}");

        // A named function: exactly one call, of that function.
        var named = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Ask(new { type = "function", function = new { name = "get_time" } }, seed: 3))).Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0];
        Assert.Equal("tool_calls", named.GetProperty("finish_reason").GetString());
        var only = Assert.Single(named.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
        Assert.Equal("get_time", only.GetProperty("function").GetProperty("name").GetString());
        AssertValidCall(only);
    }

    [Fact]
    public async Task StreamedCallsArriveAsToolCallDeltas()
    {
        var client = await ClientAsync();
        var chunks = await ChatCompletionsTests.ReadSseAsync(await client.PostAsJsonAsync("/v1/chat/completions",
            Ask(new { type = "function", function = new { name = "get_weather" } }, seed: 2, stream: true)));
        var deltas = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0]).ToList();
        Assert.Equal("tool_calls", deltas[^1].GetProperty("finish_reason").GetString());
        var parts = deltas.Where(d => d.GetProperty("delta").TryGetProperty("tool_calls", out _))
            .Select(d => Assert.Single(d.GetProperty("delta").GetProperty("tool_calls").EnumerateArray())).ToList();
        // The first delta of the call carries its id, type and name with empty arguments; the arguments follow in
        // fragments as the tokens arrive (more than one: they are streamed, not sent whole at the end).
        Assert.All(parts, p => Assert.Equal(0, p.GetProperty("index").GetInt32()));
        var first = parts[0];
        Assert.Equal("", first.GetProperty("function").GetProperty("arguments").GetString());
        Assert.True(parts.Count > 2, $"the arguments came in {parts.Count - 1} delta(s)");
        Assert.All(parts.Skip(1), p =>
        {
            Assert.False(p.TryGetProperty("id", out _));
            Assert.False(p.GetProperty("function").TryGetProperty("name", out _));
        });
        var arguments = string.Concat(parts.Select(p => p.GetProperty("function").GetProperty("arguments").GetString()));
        var assembled = JsonDocument.Parse(JsonSerializer.Serialize(new
        {
            id = first.GetProperty("id").GetString(), type = first.GetProperty("type").GetString(),
            function = new { name = first.GetProperty("function").GetProperty("name").GetString(), arguments },
        })).RootElement;
        AssertValidCall(assembled);
        // The same call as without streaming (same seed).
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions",
            Ask(new { type = "function", function = new { name = "get_weather" } }, seed: 2))).Content.ReadAsStringAsync()).RootElement;
        var whole = plain.GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function");
        Assert.Equal((whole.GetProperty("name").GetString(), whole.GetProperty("arguments").GetString()),
            (assembled.GetProperty("function").GetProperty("name").GetString(), arguments));
    }

    [Fact]
    public async Task StreamedLogprobsWithToolsMatchTheUnstreamedOnes()
    {
        var client = await ClientAsync();
        object Body(bool stream) => new
        {
            model = ChatModelFactory.ModelName, messages = new[] { new { role = "user", content = "Weather in Oslo?" } },
            tools = Tools, tool_choice = "auto", max_tokens = 40, temperature = 1, seed = 5, stream, logprobs = true, top_logprobs = 2,
        };
        var chunks = await ChatCompletionsTests.ReadSseAsync(await client.PostAsJsonAsync("/v1/chat/completions", Body(stream: true)));
        var streamed = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0])
            .Where(c => c.TryGetProperty("logprobs", out var l) && l.ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("logprobs").GetProperty("content").EnumerateArray())
            .Select(t => (t.GetProperty("token").GetString(), t.GetProperty("logprob").GetDouble(), t.GetProperty("top_logprobs").GetArrayLength()))
            .ToList();
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/chat/completions", Body(stream: false))).Content.ReadAsStringAsync()).RootElement;
        var choice = plain.GetProperty("choices")[0];
        var whole = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray()
            .Select(t => (t.GetProperty("token").GetString(), t.GetProperty("logprob").GetDouble(), t.GetProperty("top_logprobs").GetArrayLength()))
            .ToList();
        Assert.NotEmpty(whole);
        // every token's entry once, in order, streamed or not. The unstreamed request starts from the streamed one's
        // cached prompt blocks (prefix caching, on in these tests); on AVX-512 the packed matmul's result for a position
        // depends on its place in its prefill chunk, so its log-probabilities equal the recomputed ones within float32
        // tolerance, not bit for bit (decision 012): tokens and list lengths are compared exactly, log-probabilities to 1e-4.
        Assert.Equal(whole.Select(t => (t.Item1, t.Item3)), streamed.Select(t => (t.Item1, t.Item3)));
        for (int i = 0; i < whole.Count; i++)
            Assert.True(Math.Abs(whole[i].Item2 - streamed[i].Item2) <= 1e-4, $"token {i} ({whole[i].Item1}): logprob {streamed[i].Item2} streamed, {whole[i].Item2} unstreamed");
    }

    [Fact]
    public async Task AToolRoundTripIsAccepted()
    {
        var client = await ClientAsync();
        object[] conversation =
        [
            new { role = "user", content = "Weather in Oslo?" },
            new { role = "assistant", content = (string?)null, tool_calls = new[] { new { id = "call_1", type = "function", function = new { name = "get_weather", arguments = "{\"city\":\"Oslo\",\"unit\":\"c\"}" } } } },
            new { role = "tool", tool_call_id = "call_1", content = "{\"temp\": 3}" },
        ];
        var response = await client.PostAsJsonAsync("/v1/chat/completions", Ask("none", seed: 1, messages: conversation));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(body.GetProperty("choices")[0].GetProperty("message").TryGetProperty("tool_calls", out _)); // "none": text only

        object[] noId = [new { role = "user", content = "x" }, new { role = "tool", content = "3" }];
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/chat/completions", Ask("none", 1, messages: noId)), HttpStatusCode.BadRequest, param: "messages[1].tool_call_id");
    }

    [Fact]
    public async Task BadToolRequestsAre400NamingTheParam()
    {
        var client = await ClientAsync();
        async Task Bad(string body, string param, string? code = null) =>
            await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest, code, param);
        const string head = "\"model\":\"tiny-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
        await Bad("{" + head + ""","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", "tool_choice");
        await Bad("{" + head + ""","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"string","format":"email"}}}]}""", "tools[0].function.parameters", "invalid_function_parameters");
        await Bad("{" + head + ""","tools":[{"type":"function","function":{"name":"bad name"}}]}""", "tools[0].function.name");
        await Bad("{" + head + ""","tool_choice":"required"}""", "tool_choice");
        await Bad("{" + head + ""","tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}""", "response_format");
    }

    [Fact]
    public void FreeTextWithCallsIsSplitIntoContentAndCalls()
    {
        var reader = RequestReader.Parse(JsonDocument.Parse("""{"tools":[{"type":"function","function":{"name":"get_time"}}]}"""));
        var tools = ToolCalling.Read(reader);
        Assert.Equal(ToolChoiceMode.Auto, tools.Mode);
        Assert.Equal(ToolCalling.OpenTag, tools.Constraint()!.Value.Trigger);
        var (content, calls) = tools.Parse("Let me look.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>");
        Assert.Equal("Let me look.", content);
        var call = Assert.Single(calls);
        Assert.Equal(("get_time", "{\"zone\": \"UTC\"}"), (call.Function.Name, call.Function.Arguments));
        // A call cut off by max_tokens stays text.
        var (cut, none) = tools.Parse("<tool_call>\n{\"name\": \"get_time\", \"argu");
        Assert.Empty(none);
        Assert.StartsWith("<tool_call>", cut);
    }
}
