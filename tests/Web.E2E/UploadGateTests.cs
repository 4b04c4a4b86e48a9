using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>Portal uploads count against the same per-tenant bound on uploads in flight as the API's: with the
/// tenant's slots held by API uploads, the portal refuses (and stores nothing); once they end, it uploads.</summary>
public sealed class UploadGateTests(LoomServerFixture loom) : PortalTest(loom)
{
    private const string Password = "Upload-gate-pw-1";
    private const int Slots = 2; // UploadOptions.MaxConcurrentPerTenant's default

    [Fact]
    public async Task APortalUploadIsRefusedWhileTheTenantsApiUploadsHoldEverySlot()
    {
        var name = $"gate-{Guid.NewGuid():N}"[..16];
        var tenant = await Loom.CreateTenantUserAsync(name, name, Password);
        var key = await Loom.CreateApiKeyAsync(tenant, global::Loom.Data.Entities.ApiKeyScopes.All);
        using var http = new HttpClient { BaseAddress = new Uri(Loom.BaseUrl), Timeout = TimeSpan.FromMinutes(2) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        // API uploads whose bodies stop half way: each holds one of the tenant's slots until its body ends. One that
        // reaches the gate while a probe holds a slot is refused (429); it is replaced until a probe finds every slot held.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stalled = new List<Task<HttpResponseMessage>>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            stalled.RemoveAll(t => t.IsCompleted);
            while (stalled.Count < Slots) stalled.Add(http.PostAsync("/v1/files", new StalledMultipart(release.Task)));
            await Task.Delay(300);
            if (stalled.All(t => !t.IsCompleted) && await ProbeAsync(http) == HttpStatusCode.TooManyRequests && stalled.All(t => !t.IsCompleted)) break;
            Assert.True(DateTime.UtcNow < deadline, "the API uploads never held every slot");
        }

        var page = await OpenAsync();
        await SignInAsync(page, Password, name);
        await page.GotoAsync("/files");
        var upload = page.GetByRole(AriaRole.Button, new() { Name = "Upload file" });
        await Expect(upload).ToBeEnabledAsync();
        var file = $"{name}.jsonl";
        await SetFilesAsync(page.GetByLabel("JSONL file"), new FilePayload { Name = file, MimeType = "application/jsonl", Buffer = Line });
        await upload.ClickAsync();
        await Expect(page.Locator("#file-input-error")).ToHaveTextAsync($"Too many uploads in progress for your tenant (at most {Slots} at once). Try again when one finishes.");
        await Expect(page.GetByRole(AriaRole.Rowheader, new() { Name = file, Exact = true })).ToHaveCountAsync(0);

        // The API uploads end (their bodies are cut short: 400); the slots are free again.
        release.SetResult();
        foreach (var response in await Task.WhenAll(stalled)) Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, await ProbeAsync(http));
        await upload.ClickAsync();
        await Expect(page.GetByTestId("validation")).ToContainTextAsync("Valid.");
        await Expect(page.GetByRole(AriaRole.Rowheader, new() { Name = file, Exact = true })).ToHaveCountAsync(1);
    }

    private static readonly byte[] Line = Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"a?"},{"role":"assistant","content":"b"}]}""" + "\n");

    /// <summary>Uploads a file with the wrong purpose: 429 while every slot is taken, 400 (refused after the gate,
    /// nothing stored) when one is free.</summary>
    private static async Task<HttpStatusCode> ProbeAsync(HttpClient http)
    {
        using var form = new MultipartFormDataContent { { new StringContent("not-a-purpose"), "purpose" }, { new ByteArrayContent(Line), "file", "probe.jsonl" } };
        return (await http.PostAsync("/v1/files", form)).StatusCode;
    }

    /// <summary>A multipart body that keeps sending a field a little at a time (above Kestrel's minimum data rate, which
    /// would otherwise cut it off) until released, then ends without the closing boundary.</summary>
    private sealed class StalledMultipart : HttpContent
    {
        private const string Boundary = "loom-stalled";
        private readonly Task _release;

        public StalledMultipart(Task release)
        {
            _release = release;
            Headers.ContentType = MediaTypeHeaderValue.Parse($"multipart/form-data; boundary={Boundary}");
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"--{Boundary}\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n"));
            var padding = Encoding.ASCII.GetBytes(new string('x', 200));
            while (!_release.IsCompleted)
            {
                await stream.WriteAsync(padding);
                await stream.FlushAsync();
                await Task.WhenAny(_release, Task.Delay(200));
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }
    }
}
