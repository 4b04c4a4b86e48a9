using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The "new fine-tune" form refuses what the API refuses, with the API's words, next to the field; nothing
/// is created until the form is valid.</summary>
public sealed class FineTuneFormTests(LoomServerFixture loom) : PortalTest(loom)
{
    private const string Password = "Fine-tune-form-pw-1";

    [Fact]
    public async Task EachRefusalIsShownNextToItsFieldAndNothingIsCreated()
    {
        var name = $"form-{Guid.NewGuid():N}"[..16];
        var tenant = await Loom.CreateTenantUserAsync(name, name, Password);
        var key = await Loom.CreateApiKeyAsync(tenant, global::Loom.Data.Entities.ApiKeyScopes.All);
        using var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var fileName = $"form-{Guid.NewGuid():N}"[..12] + ".jsonl";
        using (var form = new MultipartFormDataContent())
        {
            form.Add(new StringContent("fine-tune"), "purpose");
            form.Add(new ByteArrayContent(Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"a?"},{"role":"assistant","content":"b"}]}""" + "\n")), "file", fileName);
            var uploaded = await http.PostAsync("/v1/files", form);
            Assert.True(uploaded.IsSuccessStatusCode, await uploaded.Content.ReadAsStringAsync());
        }

        var page = await OpenAsync();
        await SignInAsync(page, Password, name);
        await page.GetByRole(AriaRole.Navigation, new() { Name = "Portal" }).GetByRole(AriaRole.Link, new() { Name = "Fine-tunes" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("Fine-tunes");
        await Expect(page.GetByText("No fine-tunes yet.")).ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "New fine-tune" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Level = 1 })).ToHaveTextAsync("New fine-tune");
        var start = page.GetByRole(AriaRole.Button, new() { Name = "Start fine-tune" });
        await Expect(start).ToBeEnabledAsync();
        await AssertLayoutAndLabelsAsync(page);

        await start.ClickAsync();
        await Expect(page.Locator("#ft-training-error")).ToHaveTextAsync("Pick the training file.");

        var training = page.GetByLabel("Training file");
        await training.SelectOptionAsync((await training.Locator("option", new() { HasText = fileName }).GetAttributeAsync("value"))!);
        await page.GetByLabel("Suffix").FillAsync("not a suffix!");
        await start.ClickAsync();
        await Expect(page.Locator("#ft-suffix-error")).ToHaveTextAsync("'suffix' must be 1-40 characters: letters, digits, '-' or '_'.");
        await Expect(page.Locator("#ft-training-error")).ToBeEmptyAsync();

        await page.GetByLabel("Suffix").FillAsync("ok");
        await page.GetByLabel("Epochs").FillAsync("0");
        await start.ClickAsync();
        await Expect(page.Locator("#ft-epochs-error")).ToHaveTextAsync("'hyperparameters.n_epochs' must be \"auto\" or an integer between 1 and 50.");
        await Expect(page.Locator("#ft-suffix-error")).ToBeEmptyAsync();

        await page.GetByLabel("Epochs").FillAsync("2");
        await page.GetByLabel("Learning-rate multiplier").FillAsync("fast");
        await start.ClickAsync();
        await Expect(page.Locator("#ft-lr-error")).ToContainTextAsync("'hyperparameters.learning_rate_multiplier' must be \"auto\" or a number greater than 0");

        await page.GetByLabel("Learning-rate multiplier").FillAsync("");
        await page.GetByLabel("Rank").FillAsync("500");
        await start.ClickAsync();
        await Expect(page.Locator("#ft-rank-error")).ToHaveTextAsync("'hyperparameters.rank' must be \"auto\" or an integer between 1 and 128.");

        await page.GetByLabel("Rank").FillAsync("4");
        await page.GetByLabel("q_proj").UncheckAsync();
        await page.GetByLabel("v_proj").UncheckAsync();
        await start.ClickAsync();
        await Expect(page.Locator("#ft-target_modules-error")).ToContainTextAsync("'hyperparameters.target_modules' must be a list of 1-7 module names");

        await page.GetByLabel("Seed").FillAsync("-3");
        await page.GetByLabel("v_proj").CheckAsync();
        await start.ClickAsync();
        await Expect(page.Locator("#ft-seed-error")).ToHaveTextAsync($"'seed' must be an integer between 0 and {int.MaxValue}.");
        await AssertLayoutAndLabelsAsync(page);

        // Nothing reached the API's list.
        var list = JsonDocument.Parse(await http.GetStringAsync("/v1/fine_tuning/jobs")).RootElement;
        Assert.Equal(0, list.GetProperty("data").GetArrayLength());
    }
}
