using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>
/// A tenant's whole day in the portal, on the real jobs tier and engine: sign in, upload an adapter, chat with it,
/// upload a training file, launch a fine-tune and watch its loss chart move live (paused and resumed on the way),
/// cancel a second fine-tune, chat with the finished model and a checkpoint; another tenant's user sees none of it.
/// </summary>
public sealed class WalkthroughTests(LoomServerFixture loom) : PortalTest(loom)
{
    private const string Password = "Walkthrough-pw-1";
    private const int Examples = 24;

    [Fact]
    public async Task ATenantFineTunesAndChatsAndAnotherTenantSeesNoneOfIt()
    {
        var name = $"walk-{Guid.NewGuid():N}"[..16];
        await Loom.CreateTenantUserAsync(name, name, Password);
        var page = await OpenAsync();
        await SignInAsync(page, Password, name);
        await Expect(page.GetByTestId("current-user")).ToHaveTextAsync(name);
        var nav = page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" });

        // An adapter, and a chat with it.
        await nav.GetByRole(AriaRole.Link, new() { Name = "Adapters" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" })).ToBeEnabledAsync();
        var adapter = $"{name}-lora";
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(adapter);
        await SetFilesAsync(page.GetByLabel("Files"), new[] { "adapter_config.json", "adapter_model.safetensors" }.Select(f => Path.Combine(LoomServerFixture.GoldenAdapterDirectory, f)));
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" }).ClickAsync();
        await Expect(page.GetByTestId("upload-done")).ToBeVisibleAsync();
        await page.GetByTestId("upload-done").GetByRole(AriaRole.Link, new() { Name = "Try it in the playground" }).ClickAsync();
        await ChatAsync(page, adapter);

        // A training file.
        await nav.GetByRole(AriaRole.Link, new() { Name = "Files" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload file" })).ToBeEnabledAsync();
        var lines = Enumerable.Range(1, Examples).Select(i => $$"""{"messages":[{"role":"user","content":"word {{i}}?"},{"role":"assistant","content":"gloss {{i}} of the harbor"}]}""");
        var file = $"{name}.jsonl";
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = file, MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n") });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Valid.");

        // A fine-tune, watched live.
        var job = await LaunchAsync(page, file, suffix: "walk", epochs: 4);
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Live");
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("running");
        await page.WaitForFunctionAsync("() => (Chart.getChart('ft-loss')?.data.datasets[0].data.length ?? 0) >= 2");
        await page.GetByRole(AriaRole.Button, new() { Name = "Pause", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("paused");
        var pausedAt = await ChartPointsAsync(page);

        // A second fine-tune waits for the tenant's running slot; it is cancelled from its page.
        await page.EvaluateAsync("() => window.__sameDocument = true");
        var second = await LaunchAsync(page, file, suffix: "second", epochs: 1);
        Assert.NotEqual(job, second);
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new Regex("^(validating files|queued)$"));
        await page.GetByRole(AriaRole.Button, new() { Name = "Cancel fine-tune" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Confirm cancel" }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("cancelled");
        await Expect(page.GetByTestId("event-log")).ToContainTextAsync("cancelled");
        await nav.GetByRole(AriaRole.Link, new() { Name = "Fine-tunes" }).ClickAsync();
        var secondRow = page.GetByRole(AriaRole.Row).Filter(new() { HasText = second });
        await Expect(secondRow).ToContainTextAsync("cancelled");

        // Back to the first: resume, and the chart moves on without a reload until the job succeeds.
        await page.GetByRole(AriaRole.Link, new() { Name = job }).ClickAsync();
        await Expect(page.GetByTestId("live")).ToHaveTextAsync("Live");
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("paused");
        await page.EvaluateAsync("() => window.__sameDocument = true");
        await page.GetByRole(AriaRole.Button, new() { Name = "Resume", Exact = true }).ClickAsync();
        await page.WaitForFunctionAsync($"() => Chart.getChart('ft-loss').data.datasets[0].data.length > {pausedAt}");
        await Expect(page.GetByTestId("status")).ToHaveTextAsync("succeeded", new() { Timeout = 120_000 });
        Assert.True(await page.EvaluateAsync<bool>("() => window.__sameDocument === true"), "the page reloaded");
        var totalSteps = Examples * 4;
        await Expect(page.GetByTestId("step")).ToHaveTextAsync($"{totalSteps} / {totalSteps}");
        await page.WaitForFunctionAsync($"() => Chart.getChart('ft-loss').data.datasets[0].data.length === {totalSteps}");
        await Expect(page.GetByTestId("checkpoints").GetByRole(AriaRole.Row)).Not.ToHaveCountAsync(0);
        var model = (await page.GetByTestId("fine-tuned-model").TextContentAsync())!.Trim();
        Assert.StartsWith($"ft:{LoomServerFixture.ModelName}:{name}:walk:", model);
        await AssertLayoutAndLabelsAsync(page);

        // A checkpoint answers in the playground, and so does the finished model.
        await page.GetByTestId("checkpoints").GetByRole(AriaRole.Link).First.ClickAsync();
        await Expect(page.GetByLabel("Model")).ToHaveValueAsync(new Regex($"^{Regex.Escape(model)}:ckpt-step-\\d+$"));
        await ChatAsync(page, await page.GetByLabel("Model").InputValueAsync());
        await page.GoBackAsync();
        await page.GetByTestId("chat-link").ClickAsync();
        await ChatAsync(page, model);

        // Another tenant's user sees none of it.
        var otherName = $"walk-other-{Guid.NewGuid():N}"[..20];
        await Loom.CreateTenantUserAsync(otherName, otherName, Password);
        var other = await OpenAsync();
        await SignInAsync(other, Password, otherName);
        await Expect(other.GetByTestId("current-user")).ToHaveTextAsync(otherName);
        await other.GotoAsync("/fine-tunes");
        await Expect(other.GetByText("No fine-tunes yet.")).ToBeVisibleAsync();
        await other.GotoAsync($"/fine-tunes/{job}");
        await Expect(other.GetByTestId("not-found")).ToBeVisibleAsync();
        await other.GotoAsync("/adapters");
        await Expect(other.GetByText("No adapters yet.")).ToBeVisibleAsync();
        await other.GotoAsync("/files");
        await Expect(other.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Files");
        await Expect(other.GetByText(file)).ToHaveCountAsync(0);
        await other.GotoAsync($"/playground?model={Uri.EscapeDataString(model)}");
        await Expect(other.GetByText($"You have no model named “{model}”.")).ToBeVisibleAsync();
        var offered = await other.GetByLabel("Model").Locator("option").AllTextContentsAsync();
        Assert.DoesNotContain(offered, o => o.Contains(name));
    }

    private static async Task<bool> ReachedAsync(IPage page, Regex url)
    {
        try
        {
            await Expect(page).ToHaveURLAsync(url, new() { Timeout = 10_000 });
            return true;
        }
        catch (PlaywrightException)
        {
            return false;
        }
    }

    private static Task<int> ChartPointsAsync(IPage page) => page.EvaluateAsync<int>("() => Chart.getChart('ft-loss').data.datasets[0].data.length");

    private static async Task<string> LaunchAsync(IPage page, string file, string suffix, int epochs)
    {
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Fine-tunes" }).ClickAsync();
        var newLink = page.GetByRole(AriaRole.Link, new() { Name = "New fine-tune" });
        await newLink.ClickAsync();
        // Seen once in CI on a loaded machine: the click on the list's link did not navigate (the list stayed for 20 s,
        // nothing in the server log). A user clicks again; so does the walkthrough, once, only if the page did not change.
        if (!await ReachedAsync(page, new Regex("/fine-tunes/new$"))) await newLink.ClickAsync();
        var start = page.GetByRole(AriaRole.Button, new() { Name = "Start fine-tune" });
        await Expect(start).ToBeEnabledAsync();
        await page.GetByLabel("Model to start from").SelectOptionAsync(LoomServerFixture.ModelName);
        var training = page.GetByLabel("Training file");
        await training.SelectOptionAsync((await training.Locator("option", new() { HasText = file }).GetAttributeAsync("value"))!);
        await page.GetByLabel("Epochs").FillAsync(epochs.ToString());
        await page.GetByLabel("Batch size").FillAsync("1");
        await page.GetByLabel("Learning-rate multiplier").FillAsync("20");
        await page.GetByLabel("Rank").FillAsync("4");
        await page.GetByLabel("Alpha").FillAsync("8");
        await page.GetByLabel("Suffix").FillAsync(suffix);
        await page.GetByLabel("Seed").FillAsync("7");
        await start.ClickAsync();
        await Expect(page).ToHaveURLAsync(new Regex("/fine-tunes/ftjob-[0-9a-f]{32}$"));
        return page.Url[(page.Url.LastIndexOf('/') + 1)..];
    }

    private static async Task ChatAsync(IPage page, string model)
    {
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Playground");
        await Expect(page.GetByLabel("Model")).ToHaveValueAsync(model);
        await page.GetByLabel("Max tokens").FillAsync("8");
        await page.GetByLabel("Message").FillAsync("word 3?");
        var send = page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true });
        await Expect(send).ToBeEnabledAsync();
        await send.ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new Regex("^Done"));
        Assert.NotEmpty((await page.GetByTestId("turn-assistant").Locator(".content").TextContentAsync())!);
    }
}
