using System.Security.Claims;
using System.Text.Encodings.Web;
using Loom.Api.Errors;
using Loom.Api.Limits;
using Loom.Data.Keys;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Api.Auth;

public static class ApiKeyDefaults
{
    public const string Scheme = "ApiKey";
    public const string TenantClaim = "loom:tenant_id";
    public const string KeyClaim = "loom:api_key_id";
}

/// <summary>
/// Bearer authentication with <c>sk-loom-...</c> keys: resolves the key's tenant and sets the request's
/// <see cref="TenantContext"/>. Failures answer 401 in OpenAI's envelope.
/// </summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    ApiKeyService keys, TenantContext tenant, FailedAuthLimiter failures, Loom.Data.Audit.AuditActor actor)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    private const string FailureItem = "loom:auth_failure";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? header = Request.Headers.Authorization;
        if (string.IsNullOrEmpty(header)) return Fail("missing");
        // An address that has used up its failed attempts is refused before its key is looked at, right or wrong.
        var client = FailedAuthLimiter.ClientOf(Context);
        if (failures.IsBlocked(client)) return Fail("throttled");
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return Failed(client, "malformed");
        var presented = header["Bearer ".Length..].Trim();
        if (!ApiKeyService.LooksLikeSecret(presented)) return Failed(client, "malformed");

        var found = await keys.AuthenticateAsync(presented, Context.RequestAborted);
        if (found is null) return Failed(client, "unknown");
        var key = found.Key;
        Context.Features.Set(found);

        tenant.TenantId = key.TenantId;
        actor.Set("api_key", key.Id.ToString(), key.Prefix, client);
        var identity = new ClaimsIdentity(
            [
                new Claim(ApiKeyDefaults.TenantClaim, key.TenantId.ToString()), new Claim(ApiKeyDefaults.KeyClaim, key.Id.ToString()),
                new Claim(ApiScopes.Claim, ((int)key.Scopes).ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ],
            ApiKeyDefaults.Scheme);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), ApiKeyDefaults.Scheme));
    }

    private AuthenticateResult Failed(string client, string reason)
    {
        failures.RecordFailure(client);
        return Fail(reason);
    }

    private AuthenticateResult Fail(string reason)
    {
        Context.Items[FailureItem] = reason;
        return AuthenticateResult.Fail(reason);
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        if (Context.Items[FailureItem] as string == "throttled")
        {
            Response.Headers.RetryAfter = failures.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return ApiErrors.WriteAsync(Context, StatusCodes.Status429TooManyRequests,
                "Too many failed authentication attempts from your address. Try again later.", "requests", code: "too_many_failed_authentications");
        }
        var message = (Context.Items[FailureItem] as string) switch
        {
            "missing" => "You didn't provide an API key. Provide your API key in an Authorization header using Bearer auth (Authorization: Bearer sk-loom-...).",
            "malformed" => "The Authorization header is malformed. Use 'Authorization: Bearer sk-loom-...'.",
            _ => "Incorrect API key provided. The key is unknown, expired or has been revoked.",
        };
        Response.Headers.WWWAuthenticate = "Bearer";
        return ApiErrors.WriteAsync(Context, StatusCodes.Status401Unauthorized, message, "invalid_request_error", code: "invalid_api_key");
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        Context.Items[ApiScopes.MissingItem] is Loom.Data.Entities.ApiKeyScopes missing
            ? ApiErrors.WriteAsync(Context, StatusCodes.Status403Forbidden,
                $"This API key lacks the '{string.Join("', '", ApiScopes.Names(missing))}' scope this request needs. Keys with the 'manage' scope are created in the portal.",
                "invalid_request_error", code: "insufficient_scope")
            : ApiErrors.WriteAsync(Context, StatusCodes.Status403Forbidden, "You are not allowed to perform this request.", "invalid_request_error", code: "forbidden");
}

public static class ApiPrincipal
{
    public static Guid TenantId(this ClaimsPrincipal user) => Guid.Parse(user.FindFirstValue(ApiKeyDefaults.TenantClaim)!);
    public static Guid ApiKeyId(this ClaimsPrincipal user) => Guid.Parse(user.FindFirstValue(ApiKeyDefaults.KeyClaim)!);
    public static Loom.Data.Entities.ApiKeyScopes Scopes(this ClaimsPrincipal user) => ApiScopes.Of(user);
}
