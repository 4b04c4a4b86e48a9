using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>The long-context tiny chat model with a small bound on stored responses (8 KiB), so the bound can be met.</summary>
public sealed class ResponsesModelFactory : LongContextChatModelFactory
{
    public const int MaxStoredBytes = 8192;

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        base.Settings.Append(new("Api:Responses:MaxStoredBytes", MaxStoredBytes.ToString()));
}

/// <summary>POST/GET/DELETE /v1/responses and input_items through the whole stack on the tiny model, against a real
/// PostgreSQL: stored rows, chaining, tenant isolation, text.format, function tools, streaming events and bad input.</summary>
public class ResponsesTests(ResponsesModelFactory factory) : IClassFixture<ResponsesModelFactory>
{
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"enum":["Oslo","Lima","Pune"]},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"responses-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static async Task<JsonElement> OkAsync(HttpResponseMessage response)
    {
        var raw = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {raw}");
        return JsonDocument.Parse(raw).RootElement.Clone();
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient client, string json) =>
        client.PostAsync("/v1/responses", new StringContent(json, Encoding.UTF8, "application/json"));

    private static string OutputText(JsonElement response) => string.Concat(response.GetProperty("output").EnumerateArray()
        .Where(i => i.GetProperty("type").GetString() == "message")
        .SelectMany(i => i.GetProperty("content").EnumerateArray()).Select(p => p.GetProperty("text").GetString()));

    [Fact]
    public async Task AResponseIsStoredListedAndDeleted()
    {
        var client = await ClientAsync();
        var r = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "Define: harbor", instructions = "Be brief.", max_output_tokens = 12, temperature = 0, metadata = new { run = "a" } }));
        var id = r.GetProperty("id").GetString()!;
        Assert.StartsWith("resp_", id);
        Assert.Equal("response", r.GetProperty("object").GetString());
        Assert.Contains(r.GetProperty("status").GetString(), new[] { "completed", "incomplete" });
        var message = r.GetProperty("output")[0];
        Assert.Equal(("message", "assistant"), (message.GetProperty("type").GetString(), message.GetProperty("role").GetString()));
        Assert.Equal("output_text", message.GetProperty("content")[0].GetProperty("type").GetString());
        var usage = r.GetProperty("usage");
        Assert.True(usage.GetProperty("output_tokens").GetInt32() is > 0 and <= 12);
        Assert.Equal(usage.GetProperty("input_tokens").GetInt32() + usage.GetProperty("output_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal("Be brief.", r.GetProperty("instructions").GetString());
        Assert.Equal("a", r.GetProperty("metadata").GetProperty("run").GetString());
        if (r.GetProperty("status").GetString() == "incomplete")
            Assert.Equal("max_output_tokens", r.GetProperty("incomplete_details").GetProperty("reason").GetString());

        var got = await OkAsync(await client.GetAsync($"/v1/responses/{id}"));
        Assert.Equal(id, got.GetProperty("id").GetString());
        Assert.Equal(OutputText(r), OutputText(got));
        Assert.Equal(usage.GetProperty("total_tokens").GetInt32(), got.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        var items = await OkAsync(await client.GetAsync($"/v1/responses/{id}/input_items"));
        Assert.Equal("list", items.GetProperty("object").GetString());
        var item = Assert.Single(items.GetProperty("data").EnumerateArray());
        Assert.Equal("user", item.GetProperty("role").GetString());
        Assert.Equal("Define: harbor", item.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.StartsWith("msg_", item.GetProperty("id").GetString());

        var deleted = await OkAsync(await client.DeleteAsync($"/v1/responses/{id}"));
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/responses/{id}"), HttpStatusCode.NotFound);
        await ErrorAssert.IsEnvelopeAsync(await client.DeleteAsync($"/v1/responses/{id}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task InputItemsPageInBothOrders()
    {
        var client = await ClientAsync();
        var input = Enumerable.Range(0, 5).Select(i => new { role = i % 2 == 0 ? "user" : "assistant", content = $"turn {i}" }).ToArray();
        var r = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input, max_output_tokens = 2 }));
        var id = r.GetProperty("id").GetString();
        var asc = await OkAsync(await client.GetAsync($"/v1/responses/{id}/input_items?order=asc&limit=2"));
        Assert.Equal(["turn 0", "turn 1"], asc.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.True(asc.GetProperty("has_more").GetBoolean());
        var next = await OkAsync(await client.GetAsync($"/v1/responses/{id}/input_items?order=asc&limit=10&after={asc.GetProperty("last_id").GetString()}"));
        Assert.Equal(["turn 2", "turn 3", "turn 4"], next.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.False(next.GetProperty("has_more").GetBoolean());
        var desc = await OkAsync(await client.GetAsync($"/v1/responses/{id}/input_items"));
        Assert.Equal("turn 4", desc.GetProperty("data")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal("output_text", desc.GetProperty("data")[1].GetProperty("content")[0].GetProperty("type").GetString()); // turn 3, the assistant's
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/responses/{id}/input_items?limit=0"), HttpStatusCode.BadRequest, param: "limit");
    }

    [Fact]
    public async Task AResponseWithANulCharacterIsStored()
    {
        // PostgreSQL's jsonb refuses U+0000; a prompt may carry it and a model may generate it from a byte token
        var client = await ClientAsync();
        var r = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "nul \u0000 here, and a literal \\u0000", max_output_tokens = 4 }));
        var id = r.GetProperty("id").GetString();
        var items = await OkAsync(await client.GetAsync($"/v1/responses/{id}/input_items"));
        Assert.Equal("nul \uFFFD here, and a literal \\u0000", items.GetProperty("data")[0].GetProperty("content")[0].GetProperty("text").GetString());
        await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "more", previous_response_id = id, max_output_tokens = 4 }));
    }

    [Fact]
    public async Task AnotherTenantsResponseIsNotFound()
    {
        var owner = await ClientAsync();
        var other = await ClientAsync();
        var r = await OkAsync(await owner.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "hello", max_output_tokens = 4 }));
        var id = r.GetProperty("id").GetString();

        await ErrorAssert.IsEnvelopeAsync(await other.GetAsync($"/v1/responses/{id}"), HttpStatusCode.NotFound);
        await ErrorAssert.IsEnvelopeAsync(await other.GetAsync($"/v1/responses/{id}/input_items"), HttpStatusCode.NotFound);
        await ErrorAssert.IsEnvelopeAsync(await other.DeleteAsync($"/v1/responses/{id}"), HttpStatusCode.NotFound);
        await ErrorAssert.IsEnvelopeAsync(await other.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "more", previous_response_id = id }),
            HttpStatusCode.NotFound, param: "previous_response_id");
        // The other tenant's delete removed nothing.
        Assert.Equal(id, (await OkAsync(await owner.GetAsync($"/v1/responses/{id}"))).GetProperty("id").GetString());
    }

    [Fact]
    public async Task PreviousResponseIdCarriesTheConversation()
    {
        var client = await ClientAsync();
        var first = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "Name a color.", max_output_tokens = 8, temperature = 0 }));
        var second = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new
        {
            model = ChatModelFactory.ModelName, input = "Another one.", max_output_tokens = 8, temperature = 0, previous_response_id = first.GetProperty("id").GetString(),
        }));
        Assert.Equal(first.GetProperty("id").GetString(), second.GetProperty("previous_response_id").GetString());
        var alone = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "Another one.", max_output_tokens = 8, temperature = 0, store = false }));
        int Input(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens").GetInt32();
        int Output(JsonElement r) => r.GetProperty("usage").GetProperty("output_tokens").GetInt32();
        // The second prompt holds the first exchange: at least the first prompt's and answer's tokens more than alone.
        Assert.True(Input(second) >= Input(alone) + Output(first) + 3, $"chained {Input(second)}, alone {Input(alone)}, first answer {Output(first)}");

        // store: false is served but not kept.
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/responses/{alone.GetProperty("id").GetString()}"), HttpStatusCode.NotFound);
        Assert.False(alone.GetProperty("store").GetBoolean());
    }

    [Fact]
    public async Task JsonSchemaTextFormatGivesValidJson()
    {
        var client = await ClientAsync();
        var schema = JsonDocument.Parse(WeatherSchema).RootElement;
        for (var seed = 0; seed < 2; seed++)
        {
            var r = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new
            {
                model = ChatModelFactory.ModelName, input = $"Weather {seed}?", max_output_tokens = 60, temperature = 1,
                text = new { format = new { type = "json_schema", name = "weather", schema, strict = true } },
            }));
            Assert.Equal("json_schema", r.GetProperty("text").GetProperty("format").GetProperty("type").GetString());
            if (r.GetProperty("status").GetString() != "completed") continue;
            var value = JsonDocument.Parse(OutputText(r)).RootElement;
            Assert.True(SchemaCheck.Validates(value, schema, schema, out var why), $"{why}: {value}");
        }
    }

    [Fact]
    public async Task AFunctionCallRoundTrips()
    {
        var client = await ClientAsync();
        var tools = new[] { new { type = "function", name = "get_weather", description = "Weather in a city", parameters = JsonDocument.Parse(WeatherSchema).RootElement } };
        var r = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new
        {
            model = ChatModelFactory.ModelName, input = "Weather in Oslo?", tools, tool_choice = new { type = "function", name = "get_weather" }, max_output_tokens = 120, store = true,
        }));
        Assert.Equal("completed", r.GetProperty("status").GetString());
        var call = Assert.Single(r.GetProperty("output").EnumerateArray());
        Assert.Equal("function_call", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        Assert.StartsWith("call_", call.GetProperty("call_id").GetString());
        var schema = JsonDocument.Parse(WeatherSchema).RootElement;
        var args = JsonDocument.Parse(call.GetProperty("arguments").GetString()!).RootElement;
        Assert.True(SchemaCheck.Validates(args, schema, schema, out var why), $"{why}: {args}");

        var answer = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new
        {
            model = ChatModelFactory.ModelName, previous_response_id = r.GetProperty("id").GetString(), tools, tool_choice = "none", max_output_tokens = 6,
            input = new object[] { new { type = "function_call_output", call_id = call.GetProperty("call_id").GetString(), output = "{\"temp\": 3}" } },
        }));
        Assert.Equal("message", answer.GetProperty("output")[0].GetProperty("type").GetString());
        var listed = await OkAsync(await client.GetAsync($"/v1/responses/{answer.GetProperty("id").GetString()}/input_items"));
        Assert.Equal("function_call_output", listed.GetProperty("data")[0].GetProperty("type").GetString());
    }

    private static async Task<List<(string Event, JsonElement Data)>> ReadEventsAsync(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadAsStringAsync();
        var events = new List<(string, JsonElement)>();
        foreach (var block in body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            Assert.StartsWith("event: ", lines[0]);
            Assert.StartsWith("data: ", lines[1]);
            var data = JsonDocument.Parse(lines[1]["data: ".Length..]).RootElement.Clone();
            Assert.Equal(lines[0]["event: ".Length..], data.GetProperty("type").GetString());
            events.Add((lines[0]["event: ".Length..], data));
        }
        return events;
    }

    [Fact]
    public async Task StreamedTextArrivesAsSemanticEvents()
    {
        var client = await ClientAsync();
        var events = await ReadEventsAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "Define: harbor", max_output_tokens = 16, temperature = 0, stream = true }));
        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], events.Take(4).Select(e => e.Event));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Data.GetProperty("sequence_number").GetInt32()));
        var last = events[^1];
        Assert.Contains(last.Event, new[] { "response.completed", "response.incomplete" });
        var streamed = string.Concat(events.Where(e => e.Event == "response.output_text.delta").Select(e => e.Data.GetProperty("delta").GetString()));
        Assert.True(streamed.Length > 0);
        Assert.Equal(streamed, Assert.Single(events, e => e.Event == "response.output_text.done").Data.GetProperty("text").GetString());
        var final = last.Data.GetProperty("response");
        Assert.Equal(streamed, OutputText(final));
        Assert.Equal(events[0].Data.GetProperty("response").GetProperty("id").GetString(), final.GetProperty("id").GetString());
        Assert.Equal(events[2].Data.GetProperty("item").GetProperty("id").GetString(), final.GetProperty("output")[0].GetProperty("id").GetString());

        // The same text as without streaming, and stored.
        var plain = await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "Define: harbor", max_output_tokens = 16, temperature = 0 }));
        Assert.Equal(OutputText(plain), streamed);
        Assert.Equal(streamed, OutputText(await OkAsync(await client.GetAsync($"/v1/responses/{final.GetProperty("id").GetString()}"))));
    }

    [Fact]
    public async Task StreamedFunctionCallsSendArgumentEvents()
    {
        var client = await ClientAsync();
        var tools = new[] { new { type = "function", name = "get_weather", parameters = JsonDocument.Parse(WeatherSchema).RootElement } };
        var events = await ReadEventsAsync(await client.PostAsJsonAsync("/v1/responses", new
        {
            model = ChatModelFactory.ModelName, input = "Weather?", tools, tool_choice = "required", parallel_tool_calls = false, max_output_tokens = 120, stream = true,
        }));
        Assert.Equal("response.completed", events[^1].Event);
        var added = Assert.Single(events, e => e.Event == "response.output_item.added").Data.GetProperty("item");
        Assert.Equal(("function_call", ""), (added.GetProperty("type").GetString(), added.GetProperty("arguments").GetString()));
        var deltas = events.Where(e => e.Event == "response.function_call_arguments.delta").ToList();
        Assert.True(deltas.Count > 1, $"the arguments came in {deltas.Count} delta(s), not as they were generated");
        Assert.All(deltas, d => Assert.Equal(added.GetProperty("id").GetString(), d.Data.GetProperty("item_id").GetString()));
        // the item opens before its arguments stream, and they stream before it is done
        Assert.True(events.FindIndex(e => e.Event == "response.output_item.added") < events.FindIndex(e => e.Event == "response.function_call_arguments.delta"));
        Assert.True(events.FindLastIndex(e => e.Event == "response.function_call_arguments.delta") < events.FindIndex(e => e.Event == "response.function_call_arguments.done"));
        var arguments = string.Concat(deltas.Select(e => e.Data.GetProperty("delta").GetString()));
        var done = Assert.Single(events, e => e.Event == "response.function_call_arguments.done").Data;
        Assert.Equal(arguments, done.GetProperty("arguments").GetString());
        Assert.Equal(arguments, events[^1].Data.GetProperty("response").GetProperty("output")[0].GetProperty("arguments").GetString());
        var schema = JsonDocument.Parse(WeatherSchema).RootElement;
        Assert.True(SchemaCheck.Validates(JsonDocument.Parse(arguments).RootElement, schema, schema, out var why), why);
    }

    [Fact]
    public async Task BadRequestsAre400NamingTheParam()
    {
        var client = await ClientAsync();
        async Task Bad(string body, string? param, HttpStatusCode status = HttpStatusCode.BadRequest) =>
            await ErrorAssert.IsEnvelopeAsync(await PostAsync(client, body), status, param: param);
        await Bad("""{"model":"tiny-chat"}""", "input");
        await Bad("""{"input":"x"}""", "model");
        await Bad("""{"model":"tiny-chat","input":[]}""", "input");
        await Bad("""{"model":"tiny-chat","input":"x","seeds":1}""", "seeds");
        await Bad("""{"model":"tiny-chat","input":[{"role":"user","content":[{"type":"input_image","image_url":"http://x"}]}]}""", "input[0].content[0]");
        await Bad("""{"model":"tiny-chat","input":[{"role":"robot","content":"x"}]}""", "input[0].role");
        await Bad("""{"model":"tiny-chat","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{oops"}]}""", "input[0].arguments");
        await Bad("""{"model":"tiny-chat","input":[{"type":"function_call_output","output":"x"}]}""", "input[0].call_id");
        await Bad("""{"model":"tiny-chat","input":[{"type":"reasoning"}]}""", "input[0].type");
        await Bad("""{"model":"tiny-chat","input":"x","tools":[{"type":"web_search"}]}""", "tools[0].type");
        await Bad("""{"model":"tiny-chat","input":"x","tools":[{"type":"function","name":"f","parameters":{"type":"string","format":"email"}}]}""", "tools[0].parameters");
        await Bad("""{"model":"tiny-chat","input":"x","tool_choice":"required"}""", "tool_choice");
        await Bad("""{"model":"tiny-chat","input":"x","text":{"format":{"type":"json_schema","name":"n"}}}""", "text.format.schema");
        await Bad("""{"model":"tiny-chat","input":"x","max_output_tokens":0}""", "max_output_tokens");
        await Bad("""{"model":"tiny-chat","input":"x","truncation":"auto"}""", "truncation");
        await Bad("""{"model":"tiny-chat","input":"x","metadata":{"a":1}}""", "metadata.a");
        await Bad("""{"model":"tiny-chat","input":"x","previous_response_id":"resp_000000000000000000000000"}""", "previous_response_id", HttpStatusCode.NotFound);
        await Bad("""{"model":"nope","input":"x"}""", "model", HttpStatusCode.NotFound);
        await Bad("{\"model\":\"tiny-chat\",\"input\":\"x\"", null);
    }

    [Fact]
    public async Task AResponseTooLargeToStoreIsRefusedBeforeGenerating()
    {
        var client = await ClientAsync();
        // Metadata at its own bound (16 values of 512 characters) is more than this server keeps in a row.
        var metadata = Enumerable.Range(0, 16).ToDictionary(i => $"k{i}", _ => new string('a', 512));
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "x", metadata, max_output_tokens = 2 }),
            HttpStatusCode.BadRequest, param: "store");
        // The output's room counts too: 16 bytes a token.
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "x", max_output_tokens = ResponsesModelFactory.MaxStoredBytes / 16 + 1 }),
            HttpStatusCode.BadRequest, param: "store");
        // Unstored, the same request is served.
        await OkAsync(await client.PostAsJsonAsync("/v1/responses", new { model = ChatModelFactory.ModelName, input = "x", max_output_tokens = ResponsesModelFactory.MaxStoredBytes / 16 + 1, store = false, temperature = 0 }));
    }
}
