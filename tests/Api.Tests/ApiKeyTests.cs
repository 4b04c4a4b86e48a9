using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Loom.Data.Keys;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Tests;

public class ApiKeyTests(LoomFactory factory) : IClassFixture<LoomFactory>
{
    [Fact]
    public async Task KeyLifecycle_CreateListUseRevoke()
    {
        var tenant = await factory.CreateTenantAsync("lifecycle");
        var first = await factory.CreateKeyAsync(tenant.Id, "first");
        var client = factory.ClientWithKey(first.Secret);

        // Create a second key through the API: the secret is returned once, in this response only.
        var created = await client.PostAsJsonAsync("/v1/api_keys", new { name = "ci key" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await created.Content.ReadFromJsonAsync<JsonElement>();
        var secret = body.GetProperty("secret").GetString()!;
        var id = body.GetProperty("id").GetString()!;
        Assert.True(ApiKeyService.LooksLikeSecret(secret));
        Assert.Equal(secret[..12], body.GetProperty("prefix").GetString());

        // The new key works.
        var second = factory.ClientWithKey(secret);
        Assert.Equal(HttpStatusCode.OK, (await second.GetAsync("/v1/models")).StatusCode);

        // Listing shows both keys, never a secret.
        var listText = await client.GetStringAsync("/v1/api_keys");
        Assert.DoesNotContain(secret, listText);
        Assert.DoesNotContain(first.Secret, listText);
        var list = JsonDocument.Parse(listText).RootElement.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(new[] { "ci key", "first" }, list.Select(k => k.GetProperty("name").GetString()!).Order().ToArray());
        Assert.All(list, k => Assert.False(k.TryGetProperty("secret", out _)));

        // Use is recorded.
        var listed = JsonDocument.Parse(await client.GetStringAsync("/v1/api_keys")).RootElement.GetProperty("data").EnumerateArray()
            .Single(k => k.GetProperty("id").GetString() == id);
        Assert.True(listed.GetProperty("last_used_at").GetInt64() >= DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds());

        // Only a hash is stored.
        var stored = await factory.InTenantAsync(tenant.Id, db => db.ApiKeys.SingleAsync(k => k.Id == Guid.Parse(id)));
        Assert.Equal(32, stored.SecretHash.Length);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret)), stored.SecretHash);

        // Revoke: the key stops working at once, the list shows it revoked.
        var revoke = await client.DeleteAsync($"/v1/api_keys/{id}");
        Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await second.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
        var after = JsonDocument.Parse(await client.GetStringAsync("/v1/api_keys")).RootElement.GetProperty("data").EnumerateArray()
            .Single(k => k.GetProperty("id").GetString() == id);
        Assert.NotEqual(JsonValueKind.Null, after.GetProperty("revoked_at").ValueKind);
        // The other key is untouched.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task SecretsAreUniqueAndHighEntropy()
    {
        var tenant = await factory.CreateTenantAsync("entropy");
        var secrets = new HashSet<string>();
        for (var i = 0; i < 20; i++) secrets.Add((await factory.CreateKeyAsync(tenant.Id, $"k{i}")).Secret);
        Assert.Equal(20, secrets.Count);
        Assert.All(secrets, s => Assert.Equal(ApiKeyService.SecretPrefix.Length + 43, s.Length));
        // 20 x 43 base-62 characters: every one of the 62 symbols should appear at least once.
        Assert.True(secrets.SelectMany(s => s[ApiKeyService.SecretPrefix.Length..]).Distinct().Count() > 55);
    }

    [Fact]
    public async Task KeysCarryADefaultPriority()
    {
        var tenant = await factory.CreateTenantAsync("priority");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        var batch = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/api_keys", new { name = "nightly", priority = "batch" })).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("batch", batch.GetProperty("priority").GetString());
        var plain = JsonDocument.Parse(await (await client.PostAsJsonAsync("/v1/api_keys", new { name = "app" })).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("interactive", plain.GetProperty("priority").GetString());
        var stored = await factory.InTenantAsync(tenant.Id, db => db.ApiKeys.SingleAsync(k => k.Name == "nightly"));
        Assert.Equal(Loom.Data.Entities.RequestPriority.Batch, stored.Priority);
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "x", priority = "urgent" }), HttpStatusCode.BadRequest, param: "priority");
    }

    [Fact]
    public async Task RevokingUnknownKeyIs404()
    {
        var tenant = await factory.CreateTenantAsync("unknown-revoke");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        await ErrorAssert.IsEnvelopeAsync(await client.DeleteAsync($"/v1/api_keys/{Guid.NewGuid()}"), HttpStatusCode.NotFound, "api_key_not_found");
        await ErrorAssert.IsEnvelopeAsync(await client.DeleteAsync("/v1/api_keys/not-a-guid"), HttpStatusCode.NotFound, "api_key_not_found");
    }
}
