using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Data.Blobs;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

public sealed class BlobDirLoomFactory : LoomFactory
{
    public string BlobRoot { get; } = Path.Combine(Path.GetTempPath(), $"loom-blobs-{Guid.NewGuid():N}");
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Loom:Blobs:Root", BlobRoot)];
}

public class FilesTests(BlobDirLoomFactory factory) : IClassFixture<BlobDirLoomFactory>
{
    private const string ChatJsonl = """
        {"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Define: harbor"},{"role":"assistant","content":"A sheltered port."}]}
        {"messages":[{"role":"user","content":[{"type":"text","text":"Define: cat"}]},{"role":"assistant","content":"A small feline.","weight":1}]}

        """;

    private async Task<HttpClient> ClientAsync(string? tenantName = null)
    {
        var tenant = await factory.CreateTenantAsync(tenantName ?? $"files-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static MultipartFormDataContent Upload(string content, string purpose = "fine-tune", string name = "train.jsonl")
    {
        var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(Encoding.UTF8.GetBytes(content));
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(file, "file", name);
        form.Add(new StringContent(purpose), "purpose");
        return form;
    }

    [Fact]
    public async Task UploadListGetContentDelete()
    {
        var client = await ClientAsync();
        // Unique content: other tests upload ChatJsonl too, and its blob is shared by content.
        var content = ChatJsonl.Replace("Be brief.", $"Be brief {Guid.NewGuid()}.");
        var response = await client.PostAsync("/v1/files", Upload(content));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var file = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var id = file.GetProperty("id").GetString()!;
        Assert.StartsWith("file-", id);
        Assert.Equal("file", file.GetProperty("object").GetString());
        Assert.Equal("train.jsonl", file.GetProperty("filename").GetString());
        Assert.Equal("fine-tune", file.GetProperty("purpose").GetString());
        Assert.Equal(Encoding.UTF8.GetByteCount(content), file.GetProperty("bytes").GetInt64());

        var list = JsonDocument.Parse(await client.GetStringAsync("/v1/files")).RootElement;
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.Contains(list.GetProperty("data").EnumerateArray(), f => f.GetProperty("id").GetString() == id);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{id}")).StatusCode);
        Assert.Equal(content, await client.GetStringAsync($"/v1/files/{id}/content"));

        // The blob is content-addressed under its SHA-256.
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(content)));
        Assert.True(File.Exists(Path.Combine(factory.BlobRoot, sha[..2], sha)));

        var deleted = JsonDocument.Parse(await (await client.DeleteAsync($"/v1/files/{id}")).Content.ReadAsStringAsync()).RootElement;
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/files/{id}"), HttpStatusCode.NotFound, "file_not_found");
        // The blob stays until the blob collection job finds it unreferenced past its grace period (Jobs.Tests).
        Assert.True(File.Exists(Path.Combine(factory.BlobRoot, sha[..2], sha)));
    }

    [Fact]
    public async Task PromptCompletionFormatIsAccepted()
    {
        var client = await ClientAsync();
        var response = await client.PostAsync("/v1/files", Upload("{\"prompt\":\"Define: cat\",\"completion\":\" a small feline\"}\n{\"prompt\":\"a\",\"completion\":\"b\"}\n"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{\"messages\": [", 2)]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 2)]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"only a question\"}]}", 1)]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":3,\"completion\":\"b\"}", 3)]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"a\",\"completion\":\"b\"}", 2)]
    [InlineData("[1,2,3]", 1)]
    [InlineData("{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}", 2)]
    [InlineData("{\"text\":\"unknown shape\"}", 1)]
    public async Task FirstBadLineIsReportedByNumberAndNothingIsStored(string content, int badLine)
    {
        var client = await ClientAsync();
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", Upload(content)), HttpStatusCode.BadRequest, "invalid_file_format", "file");
        Assert.Contains($"line {badLine}:", error.GetProperty("message").GetString());
        var list = JsonDocument.Parse(await client.GetStringAsync("/v1/files")).RootElement;
        Assert.Empty(list.GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task InvalidUtf8IsRejected()
    {
        var client = await ClientAsync();
        var form = new MultipartFormDataContent();
        form.Add(new ByteArrayContent([(byte)'{', 0xC3, 0x28, (byte)'}']), "file", "bad.jsonl");
        form.Add(new StringContent("fine-tune"), "purpose");
        var error = await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", form), HttpStatusCode.BadRequest, "invalid_file_format");
        Assert.Contains("UTF-8", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task MissingOrWrongFieldsAre400()
    {
        var client = await ClientAsync();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", Upload(ChatJsonl, purpose: "assistants")), HttpStatusCode.BadRequest, param: "purpose");
        var noFile = new MultipartFormDataContent { { new StringContent("fine-tune"), "purpose" } };
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", noFile), HttpStatusCode.BadRequest, param: "file");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", new StringContent("{}", Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest, param: "file");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync("/v1/files", Upload("")), HttpStatusCode.BadRequest, param: "file");
    }

    [Fact]
    public async Task OtherTenantGets404ForEveryFileEndpoint()
    {
        var a = await ClientAsync();
        var b = await ClientAsync();
        var id = JsonDocument.Parse(await (await a.PostAsync("/v1/files", Upload(ChatJsonl))).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync($"/v1/files/{id}"), HttpStatusCode.NotFound, "file_not_found");
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync($"/v1/files/{id}/content"), HttpStatusCode.NotFound, "file_not_found");
        await ErrorAssert.IsEnvelopeAsync(await b.DeleteAsync($"/v1/files/{id}"), HttpStatusCode.NotFound, "file_not_found");
        Assert.DoesNotContain(id!, await b.GetStringAsync("/v1/files"));
        Assert.Equal(HttpStatusCode.OK, (await a.GetAsync($"/v1/files/{id}")).StatusCode);
    }

    [Fact]
    public async Task SharedContentSurvivesOneTenantsDelete()
    {
        var a = await ClientAsync();
        var b = await ClientAsync();
        var idA = JsonDocument.Parse(await (await a.PostAsync("/v1/files", Upload(ChatJsonl))).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        var idB = JsonDocument.Parse(await (await b.PostAsync("/v1/files", Upload(ChatJsonl))).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        Assert.Equal(HttpStatusCode.OK, (await a.DeleteAsync($"/v1/files/{idA}")).StatusCode);
        Assert.Equal(ChatJsonl, await b.GetStringAsync($"/v1/files/{idB}/content"));
    }

    [Fact]
    public async Task CorruptBlobIsDetectedOnRead()
    {
        await using var scope = factory.Services.CreateAsyncScope();
        var blobs = scope.ServiceProvider.GetRequiredService<IBlobStore>();
        var blob = await blobs.PutAsync(new MemoryStream(Encoding.UTF8.GetBytes("original content")));
        File.WriteAllText(Path.Combine(factory.BlobRoot, blob.Sha256[..2], blob.Sha256), "tampered content");
        await using var read = blobs.OpenRead(blob.Sha256);
        await Assert.ThrowsAsync<BlobCorruptException>(() => read.CopyToAsync(Stream.Null));
    }
}
