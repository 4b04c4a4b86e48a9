using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Tests;

/// <summary>Changes to keys and files leave an audit entry naming the key that made them, its address and the target.</summary>
public class AuditLogTests(BlobDirLoomFactory factory) : IClassFixture<BlobDirLoomFactory>
{
    private Task<List<AuditEntry>> EntriesAsync(Guid tenant) =>
        factory.InTenantAsync(null, db => db.AuditEntries.AsNoTracking().Where(e => e.TenantId == tenant).OrderBy(e => e.Id).ToListAsync());

    [Fact]
    public async Task KeyAndFileChangesAreAuditedWithActorAddressAndTarget()
    {
        var tenant = await factory.CreateTenantAsync($"audit-{Guid.NewGuid():N}");
        var maker = await factory.CreateKeyAsync(tenant.Id, "maker");
        var client = factory.ClientWithKey(maker.Secret);
        var before = (await EntriesAsync(tenant.Id)).Count;

        var created = await (await client.PostAsJsonAsync("/v1/api_keys", new { name = "audited" })).Content.ReadFromJsonAsync<JsonElement>();
        var keyId = created.GetProperty("id").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/api_keys/{keyId}")).StatusCode);

        var form = new MultipartFormDataContent();
        form.Add(new ByteArrayContent(Encoding.UTF8.GetBytes("{\"prompt\":\"a\",\"completion\":\"b\"}\n")) { Headers = { ContentType = new MediaTypeHeaderValue("application/jsonl") } }, "file", "t.jsonl");
        form.Add(new StringContent("fine-tune"), "purpose");
        var fileId = (await (await client.PostAsync("/v1/files", form)).Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/files/{fileId}")).StatusCode);

        // Another tenant's attempts on these ids change nothing and record nothing for this tenant.
        var other = factory.ClientWithKey((await factory.CreateKeyAsync((await factory.CreateTenantAsync($"audit-o-{Guid.NewGuid():N}")).Id)).Secret);
        Assert.Equal(HttpStatusCode.NotFound, (await other.DeleteAsync($"/v1/api_keys/{maker.Key.Id}")).StatusCode);

        var entries = (await EntriesAsync(tenant.Id)).Skip(before).ToList();
        Assert.Equal(["api_key.created", "api_key.revoked", "file.created", "file.deleted"], entries.Select(e => e.Action).ToArray());
        Assert.All(entries, e =>
        {
            Assert.Equal("api_key", e.ActorKind);
            Assert.Equal(maker.Key.Id.ToString(), e.ActorId);
            Assert.Equal(maker.Key.Prefix, e.ActorName);
            Assert.False(string.IsNullOrEmpty(e.Ip));
        });
        Assert.Equal(keyId, entries[0].TargetId);
        Assert.Equal(keyId, entries[1].TargetId);
        Assert.Equal(fileId, entries[2].TargetId);
        Assert.DoesNotContain(entries, e => (e.Detail ?? "").Contains("sk-loom-", StringComparison.Ordinal));
    }
}
