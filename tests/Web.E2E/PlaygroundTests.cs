using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The playground streams a chat through the same completion path as the API, shows its timing, and writes
/// the request as code that works against the API.</summary>
public sealed class PlaygroundTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task AReplyStreamsWithItsTimingAndMatchesTheApiForTheSameSeed()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Playground" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Playground");
        await AssertLayoutAndLabelsAsync(page);

        await page.GetByLabel("Model").SelectOptionAsync(LoomServerFixture.ModelName);
        await page.GetByLabel("System prompt").FillAsync("You are terse.");
        await page.GetByLabel("Temperature").FillAsync("0.7");
        await page.GetByLabel("Max tokens").FillAsync("12");
        await page.GetByLabel("Seed").FillAsync("1234");
        await page.GetByLabel("Message").FillAsync("hello there");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true }).ClickAsync();

        await Expect(page.GetByTestId("turn-user")).ToHaveTextAsync(new Regex("hello there"));
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new Regex("^Done"));
        var reply = (await page.GetByTestId("turn-assistant").Locator(".content").TextContentAsync())!;
        Assert.NotEmpty(reply);
        Assert.InRange(int.Parse((await page.GetByTestId("token-count").TextContentAsync())!), 1, 12);
        await Expect(page.GetByTestId("ttft")).ToHaveTextAsync(new Regex(@"^\d+ ms$"));
        await Expect(page.GetByTestId("tokens-per-second")).ToHaveTextAsync(new Regex(@"^\d+(\.\d)?$"));

        // The API with the same messages, sampling and seed gives the same text: the playground sent exactly these.
        using var http = Api();
        var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = LoomServerFixture.ModelName,
            messages = new[] { new { role = "system", content = "You are terse." }, new { role = "user", content = "hello there" } },
            temperature = 0.7, top_p = 1.0, max_tokens = 12, seed = 1234,
        });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        var api = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(api.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), reply);

        await page.GetByRole(AriaRole.Button, new() { Name = "Clear chat" }).ClickAsync();
        await Expect(page.GetByTestId("transcript")).ToHaveTextAsync("No messages yet.");
    }

    [Fact]
    public async Task TheCurlSnippetCarriesTheConversationAndWorksAgainstTheApi()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/playground");
        await page.GetByLabel("Max tokens").FillAsync("5");
        await page.GetByLabel("Message").FillAsync("first question");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new Regex("^Done"));
        await page.GetByLabel("Message").FillAsync("second question");

        var snippet = page.GetByTestId("snippet");
        await Expect(snippet).ToContainTextAsync("second question");
        var curl = (await snippet.TextContentAsync())!;
        Assert.Contains("Authorization: Bearer $LOOM_API_KEY", curl);
        Assert.Contains($"{Loom.BaseUrl}/v1/chat/completions", curl);
        var json = Regex.Match(curl, @"-d '(?<body>.*)'\s*$", RegexOptions.Singleline).Groups["body"].Value;
        var body = JsonDocument.Parse(json).RootElement;
        Assert.Equal(["user", "assistant", "user"], body.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("role").GetString()!).ToArray());
        Assert.Equal("second question", body.GetProperty("messages")[2].GetProperty("content").GetString());
        Assert.Equal(5, body.GetProperty("max_tokens").GetInt32());
        Assert.True(body.GetProperty("stream").GetBoolean());

        // The body as the snippet sends it streams from the API with a real key.
        using var http = Api();
        var response = await http.PostAsync("/v1/chat/completions", new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        Assert.EndsWith("data: [DONE]", (await response.Content.ReadAsStringAsync()).Trim());

        await page.GetByRole(AriaRole.Button, new() { Name = "Copy curl" }).ClickAsync();
        Assert.Equal(curl.Trim(), (await page.EvaluateAsync<string>("() => navigator.clipboard.readText()")).Trim());

        await page.GetByRole(AriaRole.Tab, new() { Name = "Python" }).ClickAsync();
        await Expect(snippet).ToContainTextAsync("from openai import OpenAI");
        await Expect(snippet).ToContainTextAsync($"base_url=\"{Loom.BaseUrl}/v1\"");
        await Expect(snippet).ToContainTextAsync($"model=\"{LoomServerFixture.ModelName}\"");
        await page.GetByRole(AriaRole.Tab, new() { Name = "Node" }).ClickAsync();
        await Expect(snippet).ToContainTextAsync("import OpenAI from \"openai\"");
        await Expect(snippet).ToContainTextAsync("for await (const chunk of stream)");
    }

    [Fact]
    public async Task BadSettingsAndRefusalsAreShownNextToTheirFields()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/playground?model=no-such-model");
        await Expect(page.Locator("#pg-model-error")).ToHaveTextAsync("You have no model named “no-such-model”.");

        await page.GotoAsync("/playground");
        var send = page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true });
        await Expect(send).ToBeEnabledAsync();
        await send.ClickAsync();
        await Expect(page.Locator("#pg-message-error")).ToHaveTextAsync("Write a message first.");
        await Expect(page.GetByLabel("Message")).ToHaveAttributeAsync("aria-describedby", "pg-message-error");

        await page.GetByLabel("Message").FillAsync("hi");
        await page.GetByLabel("Temperature").FillAsync("3");
        await page.GetByLabel("Seed").FillAsync("abc");
        await send.ClickAsync();
        await Expect(page.Locator("#pg-temperature-error")).ToHaveTextAsync("Temperature must be between 0 and 2.");
        await Expect(page.Locator("#pg-seed-error")).ToHaveTextAsync(new Regex("whole number"));
        await Expect(page.GetByTestId("turn-user")).ToHaveCountAsync(0);

        // Refused by the completion service: more tokens than the model's context.
        await page.GetByLabel("Temperature").FillAsync("1");
        await page.GetByLabel("Seed").FillAsync("");
        await page.GetByLabel("Max tokens").FillAsync("100000");
        await send.ClickAsync();
        await Expect(page.Locator("#pg-max-tokens-error")).ToHaveTextAsync(new Regex("maximum context length is \\d+ tokens"));
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("Refused");
        await Expect(page.GetByTestId("turn-user")).ToHaveCountAsync(0);
        await Expect(page.GetByLabel("Message")).ToHaveValueAsync("hi");
    }

    [Fact]
    public async Task StopEndsAStreamingReply()
    {
        const int maxTokens = 160;
        // A seed with which the model runs to max_tokens (no end-of-sequence token), so only Stop can end it early.
        using var http = Api();
        var seed = 0;
        for (var candidate = 1; candidate <= 40 && seed == 0; candidate++)
        {
            var check = await http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = LoomServerFixture.ModelName, messages = new[] { new { role = "user", content = "go on" } },
                temperature = 1.0, top_p = 1.0, max_tokens = maxTokens, seed = candidate,
            });
            var finish = JsonDocument.Parse(await check.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString();
            if (finish == "length") seed = candidate;
        }
        Assert.True(seed != 0, "no seed in 1..40 runs to max_tokens");

        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/playground");
        await page.GetByLabel("Max tokens").FillAsync(maxTokens.ToString());
        await page.GetByLabel("Seed").FillAsync(seed.ToString());
        await page.GetByLabel("Message").FillAsync("go on");
        var stop = page.GetByRole(AriaRole.Button, new() { Name = "Stop", Exact = true });
        await Expect(stop).ToBeDisabledAsync();

        // Click Stop from inside the page the moment it is enabled (a round trip through the test would come too late
        // for this tiny, fast model).
        await page.EvaluateAsync("""
            () => {
                const [send, stop] = ['Send', 'Stop'].map(t => [...document.querySelectorAll('button')].find(b => b.textContent.trim() === t));
                new MutationObserver((_, observer) => { if (!stop.disabled) { observer.disconnect(); stop.click(); } })
                    .observe(stop, { attributes: true });
                send.click();
            }
            """);
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("Stopped");
        Assert.InRange(int.Parse((await page.GetByTestId("token-count").TextContentAsync())!), 0, maxTokens - 1);
        await Expect(stop).ToBeDisabledAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true })).ToBeEnabledAsync();
    }

    private HttpClient Api()
    {
        var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Loom.DemoApiKey);
        return http;
    }
}
