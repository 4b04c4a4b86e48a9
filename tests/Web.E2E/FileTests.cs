using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Files: JSONL upload with progress and a line-by-line validation result, list, delete.</summary>
public sealed class FileTests(LoomServerFixture loom) : PortalTest(loom)
{
    private const string Good = """
        {"messages":[{"role":"user","content":"harbor?"},{"role":"assistant","content":"a sheltered port"}]}
        {"messages":[{"role":"user","content":"quay?"},{"role":"assistant","content":"a landing place"}]}
        {"messages":[{"role":"system","content":"terse"},{"role":"user","content":"jetty?"},{"role":"assistant","content":"a pier"}]}
        """;

    [Fact]
    public async Task AValidFileIsValidatedStoredListedAndDeleted()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Files" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Files");
        await AssertLayoutAndLabelsAsync(page);

        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload file" })).ToBeEnabledAsync();
        var name = $"train-{Guid.NewGuid():N}"[..14] + ".jsonl";
        var bytes = Encoding.UTF8.GetBytes(Good + "\n");
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = name, MimeType = "application/jsonl", Buffer = bytes });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload file" }).ClickAsync();

        await Expect(page.GetByTestId("validation")).ToHaveTextAsync("Valid. 3 examples in chat format.");
        await Expect(page.GetByTestId("file-progress-text")).ToHaveTextAsync(new Regex(@"\(100%\)$"));
        await Expect(page.GetByLabel("Upload progress")).ToHaveAttributeAsync("value", bytes.Length.ToString());
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await Expect(row).ToContainTextAsync("fine-tune");
        await Expect(row).ToContainTextAsync($"{bytes.Length} B");
        var id = (await row.Locator("code").TextContentAsync())!;
        await AssertLayoutAndLabelsAsync(page);

        // The API serves the same file, byte for byte.
        using var http = Api();
        Assert.Equal(bytes, await http.GetByteArrayAsync($"/v1/files/{id}/content"));

        await row.GetByRole(AriaRole.Button, new() { Name = $"Delete {name}" }).ClickAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Confirm delete" }).ClickAsync();
        await Expect(row).ToHaveCountAsync(0);
        Assert.Equal(404, (int)(await http.GetAsync($"/v1/files/{id}")).StatusCode);
    }

    [Fact]
    public async Task TheFirstBadLineIsNamedByNumberAndNothingIsStored()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/files");
        var upload = page.GetByRole(AriaRole.Button, new() { Name = "Upload file" });
        await Expect(upload).ToBeEnabledAsync();
        await upload.ClickAsync();
        await Expect(page.Locator("#file-input-error")).ToHaveTextAsync("Pick a JSONL file first.");

        var name = $"bad-{Guid.NewGuid():N}"[..12] + ".jsonl";
        var lines = Good.Split('\n');
        var bad = string.Join("\n", lines[0], lines[1], "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}", lines[2], "{not json");
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = name, MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(bad) });
        await upload.ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Line 3: 'messages' needs at least one assistant message to learn from.");
        await Expect(page.GetByTestId("bad-line")).ToHaveTextAsync("{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}");
        await Expect(page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true })).ToHaveCountAsync(0);

        // Not JSON at all on line 1.
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = name, MimeType = "application/jsonl", Buffer = "hello\n"u8.ToArray() });
        await upload.ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync(new Regex("^Line 1: not valid JSON"));

        using var http = Api();
        Assert.DoesNotContain(name, await http.GetStringAsync("/v1/files"));
    }

    private HttpClient Api()
    {
        var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Loom.DemoApiKey);
        return http;
    }
}
