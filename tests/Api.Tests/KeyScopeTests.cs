using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Loom.Api.Auth;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Key scopes and expiry: a leaked inference key can call models but cannot mint, revoke or upload.</summary>
public class KeyScopeTests(LoomFactory factory) : IClassFixture<LoomFactory>
{
    private async Task<(Guid Tenant, string Full, string Inference, Guid InferenceId)> TenantWithKeysAsync()
    {
        var tenant = await factory.CreateTenantAsync($"scopes-{Guid.NewGuid():N}");
        var full = await factory.CreateKeyAsync(tenant.Id, "portal key");
        var inference = await factory.CreateKeyAsync(tenant.Id, "app key", ApiKeyScopes.Inference);
        return (tenant.Id, full.Secret, inference.Secret, inference.Key.Id);
    }

    [Fact]
    public async Task LeakedInferenceKeyCannotCreateOrRevokeKeys()
    {
        var (tenant, full, inference, _) = await TenantWithKeysAsync();
        var fullId = (await factory.InTenantAsync(tenant, db => db.ApiKeys.SingleAsync(k => k.Name == "portal key"))).Id;
        var leaked = factory.ClientWithKey(inference);

        Assert.Equal(HttpStatusCode.OK, (await leaked.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await leaked.GetAsync("/v1/usage")).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await leaked.PostAsJsonAsync("/v1/api_keys", new { name = "foothold" }), HttpStatusCode.Forbidden, "insufficient_scope");
        await ErrorAssert.IsEnvelopeAsync(await leaked.DeleteAsync($"/v1/api_keys/{fullId}"), HttpStatusCode.Forbidden, "insufficient_scope");
        await ErrorAssert.IsEnvelopeAsync(await leaked.GetAsync("/v1/api_keys"), HttpStatusCode.Forbidden, "insufficient_scope");
        await ErrorAssert.IsEnvelopeAsync(await leaked.GetAsync("/v1/files"), HttpStatusCode.Forbidden, "insufficient_scope");
        await ErrorAssert.IsEnvelopeAsync(await leaked.GetAsync("/v1/adapters"), HttpStatusCode.Forbidden, "insufficient_scope");
        using var form = new MultipartFormDataContent { { new StringContent("x"), "name" } };
        await ErrorAssert.IsEnvelopeAsync(await leaked.PostAsync("/v1/adapters", form), HttpStatusCode.Forbidden, "insufficient_scope");

        // Nothing changed: still two keys, the portal key still works.
        Assert.Equal(2, await factory.InTenantAsync(tenant, db => db.ApiKeys.CountAsync(k => k.RevokedAt == null)));
        Assert.Equal(HttpStatusCode.OK, (await factory.ClientWithKey(full).GetAsync("/v1/api_keys")).StatusCode);
    }

    [Fact]
    public async Task KeysMadeThroughTheApiHoldOnlyTheInferenceScope()
    {
        var (tenant, full, _, _) = await TenantWithKeysAsync();
        var client = factory.ClientWithKey(full);

        var made = await client.PostAsJsonAsync("/v1/api_keys", new { name = "ci" });
        Assert.Equal(HttpStatusCode.Created, made.StatusCode);
        var body = await made.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(["inference"], body.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()!).ToArray());
        var minted = factory.ClientWithKey(body.GetProperty("secret").GetString()!);
        await ErrorAssert.IsEnvelopeAsync(await minted.PostAsJsonAsync("/v1/api_keys", new { name = "again" }), HttpStatusCode.Forbidden, "insufficient_scope");

        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "m", scopes = new[] { "manage" } }), HttpStatusCode.Forbidden, "insufficient_scope", "scopes");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "m", scopes = new[] { "inference", "manage" } }), HttpStatusCode.Forbidden, "insufficient_scope", "scopes");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "m", scopes = new[] { "root" } }), HttpStatusCode.BadRequest, param: "scopes");
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsJsonAsync("/v1/api_keys", new { name = "m", scopes = Array.Empty<string>() }), HttpStatusCode.BadRequest, param: "scopes");
        Assert.Equal(3, await factory.InTenantAsync(tenant, db => db.ApiKeys.CountAsync()));
        Assert.Equal(ApiKeyScopes.Inference, (await factory.InTenantAsync(tenant, db => db.ApiKeys.SingleAsync(k => k.Name == "ci"))).Scopes);
    }

    [Fact]
    public async Task ExpiredKeyIsRejectedLikeARevokedOne()
    {
        var (tenant, _, inference, inferenceId) = await TenantWithKeysAsync();
        var client = factory.ClientWithKey(inference);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
        await factory.InTenantAsync(tenant, async db =>
        {
            (await db.ApiKeys.SingleAsync(k => k.Id == inferenceId)).ExpiresAt = DateTimeOffset.UtcNow.AddSeconds(-1);
            return await db.SaveChangesAsync();
        });
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, "invalid_api_key");
    }

    [Fact]
    public async Task ExpiryIsValidatedAndAKeyNeverOutlivesItsMaker()
    {
        var tenant = await factory.CreateTenantAsync($"expiry-{Guid.NewGuid():N}");
        var makerExpires = DateTimeOffset.UtcNow.AddDays(2);
        var maker = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id, "maker", expiresAt: makerExpires)).Secret);

        await ErrorAssert.IsEnvelopeAsync(await maker.PostAsJsonAsync("/v1/api_keys", new { name = "past", expires_at = DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds() }), HttpStatusCode.BadRequest, param: "expires_at");

        async Task<long> ExpiresOf(object request)
        {
            var r = await maker.PostAsJsonAsync("/v1/api_keys", request);
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("expires_at").GetInt64();
        }
        var soon = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        Assert.Equal(soon, await ExpiresOf(new { name = "soon", expires_at = soon }));
        Assert.Equal(makerExpires.ToUnixTimeSeconds(), await ExpiresOf(new { name = "forever" }));
        Assert.Equal(makerExpires.ToUnixTimeSeconds(), await ExpiresOf(new { name = "later", expires_at = DateTimeOffset.UtcNow.AddDays(30).ToUnixTimeSeconds() }));
    }

    /// <summary>Read from the route table: only the listed endpoints take an inference key; every other /v1 endpoint (a new one too) needs manage.</summary>
    [Fact]
    public void OnlyTheInferenceEndpointsAcceptInferenceKeys()
    {
        var endpoints = factory.Services.GetServices<EndpointDataSource>().SelectMany(s => s.Endpoints).OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/v1/", StringComparison.Ordinal) == true).ToList();
        Assert.NotEmpty(endpoints);
        var inference = endpoints.Where(e => ApiScopes.Required(e) == ApiKeyScopes.Inference)
            .Select(e => $"{string.Join(",", e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [])} {e.RoutePattern.RawText}").Order().ToArray();
        Assert.Equal([
            "DELETE /v1/responses/{id}", "GET /v1/models", "GET /v1/models/{id}", "GET /v1/responses/{id}", "GET /v1/responses/{id}/input_items",
            "GET /v1/usage", "POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "POST /v1/responses",
        ], inference);
        Assert.All(endpoints.Where(e => ApiScopes.Required(e) != ApiKeyScopes.Inference), e => Assert.Equal(ApiKeyScopes.Manage, ApiScopes.Required(e)));
    }
}
