using System.IO.Compression;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Adapters: upload with progress (folder files or an archive), list, detail, "try it", delete; errors next to
/// their fields.</summary>
public sealed class AdapterTests(LoomServerFixture loom) : PortalTest(loom)
{
    private static string[] FolderFiles => new[] { "adapter_config.json", "adapter_model.safetensors" }.Select(f => Path.Combine(LoomServerFixture.GoldenAdapterDirectory, f)).ToArray();

    [Fact]
    public async Task AnUploadedAdapterIsListedHasDetailsChatsInThePlaygroundAndIsDeleted()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Adapters" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Adapters");
        await AssertLayoutAndLabelsAsync(page);

        var name = $"ad-{Guid.NewGuid():N}"[..12];
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
        await page.GetByLabel("Base model").SelectOptionAsync(LoomServerFixture.ModelName);
        await SetFilesAsync(page.GetByLabel("Files"), FolderFiles);
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" }).ClickAsync();

        await Expect(page.GetByTestId("upload-done")).ToContainTextAsync($"Adapter “{name}” uploaded.");
        await Expect(page.GetByTestId("adapter-progress-text")).ToHaveTextAsync(new Regex(@"\(100%\)$"));
        await Expect(page.GetByLabel("Upload progress")).ToHaveAttributeAsync("value", new FileInfo(FolderFiles[0]).Length + new FileInfo(FolderFiles[1]).Length + "");
        var row = page.GetByRole(AriaRole.Row).Filter(new() { Has = page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true }) });
        await Expect(row).ToContainTextAsync(LoomServerFixture.ModelName);
        await Expect(row.GetByRole(AriaRole.Cell).Nth(1)).ToHaveTextAsync("4");
        await Expect(row).ToContainTextAsync("q_proj, k_proj, gate_proj, up_proj, down_proj");
        await AssertLayoutAndLabelsAsync(page);

        // The API sees the same adapter.
        using var http = Api();
        Assert.True((await http.GetAsync($"/v1/adapters/{name}")).IsSuccessStatusCode);

        // Detail, then "try it": the playground opens with the adapter picked and chats with it.
        await row.GetByRole(AriaRole.Link, new() { Name = name, Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync(name);
        await Expect(page.GetByTestId("rank")).ToHaveTextAsync("4");
        await Expect(page.GetByTestId("base-model")).ToHaveTextAsync(LoomServerFixture.ModelName);
        await AssertLayoutAndLabelsAsync(page);
        await page.GetByRole(AriaRole.Link, new() { Name = "Try it in the playground" }).ClickAsync();
        await Expect(page.GetByLabel("Model")).ToHaveValueAsync(name);
        await page.GetByLabel("Max tokens").FillAsync("6");
        await page.GetByLabel("Message").FillAsync("hello adapter");
        await page.GetByRole(AriaRole.Button, new() { Name = "Send", Exact = true }).ClickAsync();
        await Expect(page.GetByTestId("status")).ToHaveTextAsync(new Regex("^Done"));
        await Expect(page.GetByTestId("turn-assistant").Locator(".content")).Not.ToBeEmptyAsync();

        // Delete, with a confirmation step that can be cancelled.
        await page.GotoAsync("/adapters");
        await row.GetByRole(AriaRole.Button, new() { Name = $"Delete {name}" }).ClickAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Cancel" }).ClickAsync();
        await Expect(row).ToHaveCountAsync(1);
        await row.GetByRole(AriaRole.Button, new() { Name = $"Delete {name}" }).ClickAsync();
        await Expect(row.GetByText($"Delete “{name}”?")).ToBeVisibleAsync();
        await row.GetByRole(AriaRole.Button, new() { Name = "Confirm delete" }).ClickAsync();
        await Expect(row).ToHaveCountAsync(0);
        Assert.Equal(404, (int)(await http.GetAsync($"/v1/adapters/{name}")).StatusCode);
    }

    [Fact]
    public async Task AZipOfTheFolderUploads()
    {
        var zip = Path.Combine(Path.GetTempPath(), $"adapter-{Guid.NewGuid():N}.zip");
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Create))
            foreach (var f in FolderFiles) archive.CreateEntryFromFile(f, $"my-adapter/{Path.GetFileName(f)}");
        try
        {
            var page = await OpenAsync();
            await SignInAsync(page);
            await page.GotoAsync("/adapters");
            await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" })).ToBeEnabledAsync();
            var name = $"zip-{Guid.NewGuid():N}"[..12];
            await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
            await SetFilesAsync(page.GetByLabel("Files"), zip);
            await Expect(page.GetByTestId("picked")).ToContainTextAsync(Path.GetFileName(zip));
            await page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" }).ClickAsync();
            await Expect(page.GetByTestId("upload-done")).ToBeVisibleAsync();
            await Expect(page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true })).ToBeVisibleAsync();
        }
        finally
        {
            File.Delete(zip);
        }
    }

    [Fact]
    public async Task ProblemsAreShownNextToTheFieldAndNothingIsStored()
    {
        var page = await OpenAsync();
        await SignInAsync(page);
        await page.GotoAsync("/adapters");
        var upload = page.GetByRole(AriaRole.Button, new() { Name = "Upload adapter" });
        await Expect(upload).ToBeEnabledAsync();

        await upload.ClickAsync();
        await Expect(page.Locator("#adapter-name-error")).ToHaveTextAsync("Give the adapter a name.");
        await Expect(page.Locator("#adapter-files-error")).ToHaveTextAsync("Pick the adapter's files or an archive.");
        await Expect(page.GetByLabel("Name", new() { Exact = true })).ToHaveAttributeAsync("aria-describedby", "adapter-name-error");

        // A name the API refuses, checked by the same service.
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("bad name!");
        await SetFilesAsync(page.GetByLabel("Files"), FolderFiles);
        await upload.ClickAsync();
        await Expect(page.Locator("#adapter-name-error")).ToHaveTextAsync(new Regex("^'name' must be 1-100 characters"));
        await Expect(page.Locator("#adapter-files-error")).ToBeEmptyAsync();

        // Only the config: the weights are missing.
        var name = $"bad-{Guid.NewGuid():N}"[..12];
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync(name);
        await SetFilesAsync(page.GetByLabel("Files"), FolderFiles[0]);
        await upload.ClickAsync();
        await Expect(page.Locator("#adapter-files-error")).ToHaveTextAsync(new Regex("'adapter_model.safetensors' is missing"));

        // A corrupt archive.
        await SetFilesAsync(page.GetByLabel("Files"), new FilePayload { Name = "adapter.zip", MimeType = "application/zip", Buffer = [1, 2, 3, 4] });
        await upload.ClickAsync();
        await Expect(page.Locator("#adapter-files-error")).ToHaveTextAsync(new Regex("^The .zip archive is corrupt"));

        // Weights that do not fit the base model (the config claims a rank the tensors do not have).
        var config = (await File.ReadAllTextAsync(FolderFiles[0])).Replace("\"r\": 4", "\"r\": 8");
        await page.GetByLabel("Files").SetInputFilesAsync(new[]
        {
            new FilePayload { Name = "adapter_config.json", MimeType = "application/json", Buffer = System.Text.Encoding.UTF8.GetBytes(config) },
            new FilePayload { Name = "adapter_model.safetensors", MimeType = "application/octet-stream", Buffer = await File.ReadAllBytesAsync(FolderFiles[1]) },
        });
        await upload.ClickAsync();
        await Expect(page.Locator("#adapter-files-error")).ToHaveTextAsync(new Regex("^Invalid adapter: "));

        await Expect(page.GetByRole(AriaRole.Rowheader, new() { Name = name, Exact = true })).ToHaveCountAsync(0);
        using var http = Api();
        Assert.Equal(404, (int)(await http.GetAsync($"/v1/adapters/{name}")).StatusCode);

        // A detail page of no adapter.
        await page.GotoAsync("/adapters/nothing-here");
        await Expect(page.GetByTestId("not-found")).ToHaveTextAsync("You have no adapter named “nothing-here”.");
    }

    private HttpClient Api()
    {
        var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Loom.DemoApiKey);
        return http;
    }
}
