using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Loom.Api.Limits;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Serves the tiny model (adapters are checked against it) with small upload limits so each bound is cheap to reach.</summary>
public class SmallUploadsFactory : ChatModelFactory
{
    public string BlobRoot { get; } = Path.Combine(Path.GetTempPath(), $"loom-blobs-{Guid.NewGuid():N}");

    protected override IEnumerable<KeyValuePair<string, string?>> Settings => base.Settings.Concat(
    [
        new("Loom:Blobs:Root", BlobRoot),
        new("Api:AdapterCacheDirectory", BlobRoot + "-adapters"),
        new("Api:Uploads:MaxDecompressedBytes", (4 << 20).ToString()),
        new("Api:Uploads:MaxArchiveEntries", "16"),
        new("Api:Uploads:MaxConcurrentPerTenant", "1"),
        new("Api:Uploads:MaxStoredBytesPerTenant", (1 << 20).ToString()),
        new("Api:Uploads:MaxJsonlLineBytes", (64 << 10).ToString()),
    ]);
}

/// <summary>Every bound on an upload answers in OpenAI's envelope and stores nothing.</summary>
public class UploadLimitsTests(SmallUploadsFactory factory) : IClassFixture<SmallUploadsFactory>
{
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");
    private static byte[] Config => File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"));
    private static byte[] Weights => File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"));

    private async Task<(HttpClient Client, Guid Tenant)> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"uploads-{Guid.NewGuid():N}");
        return (factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret), tenant.Id);
    }

    internal static MultipartFormDataContent ArchiveForm(string name, byte[] archive, string fileName)
    {
        var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(archive) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } }, "file", fileName);
        return form;
    }

    private static MultipartFormDataContent FilesForm(string name, byte[] config, byte[] weights)
    {
        var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(config), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(weights), "adapter_model.safetensors", "adapter_model.safetensors");
        return form;
    }

    internal static MultipartFormDataContent JsonlForm(byte[] content)
    {
        var form = new MultipartFormDataContent();
        form.Add(new ByteArrayContent(content) { Headers = { ContentType = new MediaTypeHeaderValue("application/jsonl") } }, "file", "train.jsonl");
        form.Add(new StringContent("fine-tune"), "purpose");
        return form;
    }

    private static byte[] Examples(int bytes)
    {
        var line = "{\"prompt\":\"p\",\"completion\":\"" + new string('c', 200) + "\"}\n";
        var sb = new StringBuilder();
        while (sb.Length + line.Length <= bytes) sb.Append(line);
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private int BlobCount() => Directory.Exists(factory.BlobRoot) ? Directory.EnumerateFiles(factory.BlobRoot, "*", SearchOption.AllDirectories).Count() : 0;

    [Fact]
    public async Task ArchivesThatUnpackPastTheBudgetAreRefused()
    {
        var (client, _) = await ClientAsync();
        var blobs = BlobCount();
        var big = new byte[6 << 20]; // zeros: a few KiB compressed, 6 MiB unpacked (budget 4 MiB)
        var tgz = ArchiveBuilder.TarGz(("adapter_config.json", Config), ("adapter_model.safetensors", big));
        Assert.True(tgz.Length < 64 << 10);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("tgz-bomb", tgz, "a.tar.gz")), HttpStatusCode.BadRequest, param: "file");
        // Unwanted entries count too: the budget is on every byte unpacked.
        var decoys = ArchiveBuilder.TarGz(("junk.bin", big), ("adapter_config.json", Config), ("adapter_model.safetensors", Weights));
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("tgz-decoy", decoys, "a.tar.gz")), HttpStatusCode.BadRequest, "archive_too_large", "file");
        var zip = ArchiveBuilder.Zip(("adapter_config.json", Config), ("adapter_model.safetensors", big));
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("zip-bomb", zip, "a.zip")), HttpStatusCode.BadRequest, "file_too_large", "file");
        Assert.Equal(blobs, BlobCount());
    }

    [Fact]
    public async Task ArchivesWithTooManyEntriesAreRefused()
    {
        var (client, _) = await ClientAsync();
        var many = Enumerable.Range(0, 40).Select(i => ($"pad/{i}.txt", new byte[1])).Append(("adapter_config.json", Config)).Append(("adapter_model.safetensors", Weights)).ToArray();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("zip-many", ArchiveBuilder.Zip(many), "a.zip")), HttpStatusCode.BadRequest, "archive_too_many_entries", "file");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("tgz-many", ArchiveBuilder.TarGz(many), "a.tgz")), HttpStatusCode.BadRequest, "archive_too_many_entries", "file");
        // A small archive of the same files is fine.
        var few = ArchiveBuilder.TarGz(("adapter_config.json", Config), ("adapter_model.safetensors", Weights));
        Assert.Equal(HttpStatusCode.Created, (await client.PostAsync("/v1/adapters", ArchiveForm("tgz-few", few, "a.tgz"))).StatusCode);
    }

    [Fact]
    public async Task OversizedMetadataConfigAndSafetensorsHeaderAreRefused()
    {
        var (client, _) = await ClientAsync();
        // A PAX record past the cap (64 KiB) is refused at its header.
        var pax = ArchiveBuilder.PaxBombTarGz(1 << 20);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", ArchiveForm("pax", pax, "a.tar.gz")), HttpStatusCode.BadRequest, "archive_header_too_large", "file");
        // adapter_config.json past 64 KiB (valid JSON padded with spaces).
        var config = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Config) + new string(' ', 70_000));
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", FilesForm("big-config", config, Weights)), HttpStatusCode.BadRequest, "file_too_large", "file");
        // A safetensors header length of 64 MiB (the file itself is tiny).
        var weights = Weights;
        BitConverter.GetBytes((ulong)(64 << 20)).CopyTo(weights, 0);
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", FilesForm("big-header", Config, weights)), HttpStatusCode.BadRequest, "invalid_adapter", "file");
        Assert.Contains("header", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task OverlongJsonlLineIsABadLineNotABufferedOne()
    {
        var (client, _) = await ClientAsync();
        var good = "{\"prompt\":\"a\",\"completion\":\"b\"}\n";
        var content = Encoding.UTF8.GetBytes(good + "{\"prompt\":\"" + new string('x', 100_000) + "\",\"completion\":\"b\"}\n" + good);
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", JsonlForm(content)), HttpStatusCode.BadRequest, "invalid_file_format", "file");
        Assert.Contains("line 2", error.GetProperty("message").GetString());
        Assert.Contains("longer than", error.GetProperty("message").GetString());
        // CRLF line ends and a BOM are fine.
        var crlf = Encoding.UTF8.GetBytes("\uFEFF" + good.Replace("\n", "\r\n") + good.Replace("\n", "\r\n"));
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/files", JsonlForm(crlf))).StatusCode);
    }

    [Fact]
    public async Task StoredBytesPerTenantAreCappedWith413()
    {
        var (client, _) = await ClientAsync();
        var file = Examples(400 << 10);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/files", JsonlForm(file))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/files", JsonlForm(file))).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", JsonlForm(file)), HttpStatusCode.RequestEntityTooLarge, "storage_quota_exceeded");
        // Adapters count against the same quota.
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/adapters", FilesForm("over-quota", Config, Weights.Concat(new byte[300 << 10]).ToArray())),
            HttpStatusCode.RequestEntityTooLarge, "storage_quota_exceeded");
        // Another tenant has its own quota.
        var (other, _) = await ClientAsync();
        Assert.Equal(HttpStatusCode.OK, (await other.PostAsync("/v1/files", JsonlForm(file))).StatusCode);
    }

    [Fact]
    public async Task ConcurrentUploadsPerTenantAreCappedWith429()
    {
        var (_, tenant) = await ClientAsync();
        // Straight to the test server: the factory's default client buffers a request body before sending it.
        var client = factory.Server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", (await factory.CreateKeyAsync(tenant, "held")).Secret);
        var gate = factory.Services.GetRequiredService<UploadGate>();
        var release = new TaskCompletionSource();
        var held = new HeldMultipart(release.Task);
        var first = client.PostAsync("/v1/files", held);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (gate.InFlight(tenant) == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(1, gate.InFlight(tenant));

        var second = await client.PostAsync("/v1/files", JsonlForm(Examples(1000)));
        await ErrorAssert.IsEnvelopeAsync(second, HttpStatusCode.TooManyRequests, "too_many_concurrent_uploads");
        Assert.NotNull(second.Headers.RetryAfter);
        // Another tenant is not held up.
        var (other, _) = await ClientAsync();
        Assert.Equal(HttpStatusCode.OK, (await other.PostAsync("/v1/files", JsonlForm(Examples(1000)))).StatusCode);

        release.SetResult();
        await first;
        Assert.Equal(0, gate.InFlight(tenant));
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/files", JsonlForm(Examples(1000)))).StatusCode);
    }

    /// <summary>A multipart body that sends its first part header, then waits before finishing a valid file part.</summary>
    private sealed class HeldMultipart : HttpContent
    {
        private const string Boundary = "held-boundary";
        private readonly Task _release;

        public HeldMultipart(Task release)
        {
            _release = release;
            Headers.ContentType = MediaTypeHeaderValue.Parse($"multipart/form-data; boundary={Boundary}");
        }

        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"--{Boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"));
            await stream.FlushAsync();
            await _release;
            await stream.WriteAsync(Encoding.ASCII.GetBytes(
                $"--{Boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n{{\"prompt\":\"a\",\"completion\":\"b\"}}\n\r\n--{Boundary}--\r\n"));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }
    }
}
