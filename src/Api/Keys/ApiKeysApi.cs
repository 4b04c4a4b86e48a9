using System.Security.Claims;
using System.Text.Json.Serialization;
using Loom.Api.Auth;
using Loom.Api.Errors;
using Loom.Api.Models;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Keys;

[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CreateApiKeyRequest(
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("priority")] string? Priority = null,
    [property: JsonPropertyName("scopes")] IReadOnlyList<string>? Scopes = null,
    [property: JsonPropertyName("expires_at")] long? ExpiresAt = null);

public sealed record ApiKeyObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("prefix")] string Prefix,
    [property: JsonPropertyName("created_at")] long CreatedAt,
    [property: JsonPropertyName("last_used_at")] long? LastUsedAt,
    [property: JsonPropertyName("revoked_at")] long? RevokedAt,
    [property: JsonPropertyName("priority")] string Priority,
    [property: JsonPropertyName("scopes")] IReadOnlyList<string> Scopes,
    [property: JsonPropertyName("expires_at")] long? ExpiresAt,
    [property: JsonPropertyName("secret"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Secret = null)
{
    public static ApiKeyObject From(ApiKey k, string? secret = null) => new(
        k.Id.ToString(), "api_key", k.Name, k.Prefix, k.CreatedAt.ToUnixTimeSeconds(),
        k.LastUsedAt?.ToUnixTimeSeconds(), k.RevokedAt?.ToUnixTimeSeconds(), PriorityNames.Name(k.Priority),
        ApiScopes.Names(k.Scopes), k.ExpiresAt?.ToUnixTimeSeconds(), secret);
}

/// <summary>
/// /v1/api_keys: a tenant manages its own keys with a key holding the manage scope. The secret appears only in
/// the create response; list and revoke see only the caller's tenant (query filter), so another tenant's key id
/// is a 404. Keys made here hold only the inference scope (manage keys are made in the portal) and expire no
/// later than the key that made them.
/// </summary>
public static class ApiKeysApi
{
    public static RouteGroupBuilder MapApiKeys(this RouteGroupBuilder v1)
    {
        v1.MapGet("/api_keys", List).WithName("ListApiKeys").RequireScope(ApiKeyScopes.Manage);
        v1.MapPost("/api_keys", Create).WithName("CreateApiKey").RequireScope(ApiKeyScopes.Manage);
        v1.MapDelete("/api_keys/{id}", Revoke).WithName("RevokeApiKey").RequireScope(ApiKeyScopes.Manage);
        return v1;
    }

    private static async Task<IResult> List(ApiKeyService keys, CancellationToken ct) =>
        Results.Json(new ListResponse<ApiKeyObject>("list", (await keys.ListAsync(ct)).Select(k => ApiKeyObject.From(k)).ToList()));

    private static async Task<IResult> Create(CreateApiKeyRequest? request, HttpContext http, ClaimsPrincipal user, ApiKeyService keys, TimeProvider clock, CancellationToken ct)
    {
        if (request is null) return ApiErrors.BadRequest("A JSON request body is required.");
        var name = request.Name?.Trim();
        if (string.IsNullOrEmpty(name)) return ApiErrors.BadRequest("'name' is required.", "name");
        if (name.Length > 200) return ApiErrors.BadRequest("'name' must be at most 200 characters.", "name");
        var priority = RequestPriority.Interactive;
        if (request.Priority is not null && !PriorityNames.TryParse(request.Priority, out priority))
            return ApiErrors.BadRequest("'priority' must be 'interactive' or 'batch'.", "priority");

        var scopes = ApiKeyScopes.Inference;
        if (request.Scopes is not null)
        {
            scopes = ApiKeyScopes.None;
            foreach (var s in request.Scopes.Take(8))
            {
                if (!ApiScopes.TryParse(s, out var one)) return ApiErrors.BadRequest("'scopes' may hold only 'inference'.", "scopes");
                scopes |= one;
            }
            if (scopes == ApiKeyScopes.None || request.Scopes.Count > 8) return ApiErrors.BadRequest("'scopes' must be [\"inference\"].", "scopes");
        }
        if (scopes.HasFlag(ApiKeyScopes.Manage))
            return ApiErrors.Error(StatusCodes.Status403Forbidden, "Keys with the 'manage' scope are created in the portal, not through the API.",
                "invalid_request_error", "scopes", "insufficient_scope");

        var now = clock.GetUtcNow();
        DateTimeOffset? expires = null;
        if (request.ExpiresAt is { } at)
        {
            if (at <= now.ToUnixTimeSeconds() || at > now.AddYears(10).ToUnixTimeSeconds())
                return ApiErrors.BadRequest("'expires_at' must be a Unix time in the future (within 10 years).", "expires_at");
            expires = DateTimeOffset.FromUnixTimeSeconds(at);
        }
        // A key never outlives the key that made it, so a leaked expiring key cannot mint a lasting one.
        if (http.Features.Get<AuthenticatedKey>()?.Key.ExpiresAt is { } creatorExpires && (expires is null || expires > creatorExpires)) expires = creatorExpires;

        var created = await keys.CreateAsync(user.TenantId(), new NewApiKey(name, priority, scopes, expires), ct);
        return Results.Json(ApiKeyObject.From(created.Key, created.Secret), statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> Revoke(string id, ApiKeyService keys, CancellationToken ct)
    {
        if (!Guid.TryParse(id, out var keyId) || !await keys.RevokeAsync(keyId, ct))
            return ApiErrors.NotFound($"No API key with id '{id}'.", "id", "api_key_not_found");
        return Results.Json(new { id, @object = "api_key.deleted", deleted = true });
    }
}

/// <summary>Wire names of request priorities (API key field and the X-Loom-Priority header).</summary>
public static class PriorityNames
{
    public const string Header = "X-Loom-Priority";

    public static string Name(RequestPriority p) => p == RequestPriority.Batch ? "batch" : "interactive";

    public static bool TryParse(string? s, out RequestPriority priority)
    {
        priority = RequestPriority.Interactive;
        switch (s?.Trim().ToLowerInvariant())
        {
            case "interactive": return true;
            case "batch": priority = RequestPriority.Batch; return true;
            default: return false;
        }
    }
}
