using System.Security.Claims;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Auth;

/// <summary>The scope an endpoint needs; an endpoint under /v1 without one needs <see cref="ApiKeyScopes.Manage"/>.</summary>
public sealed record ApiScopeMetadata(ApiKeyScopes Scope);

public static class ApiScopes
{
    public const string Claim = "loom:scopes";
    internal const string MissingItem = "loom:missing_scope";

    /// <summary>Secure by default: a new endpoint that forgets to say what it needs requires the manage scope.</summary>
    public const ApiKeyScopes Default = ApiKeyScopes.Manage;

    public static TBuilder RequireScope<TBuilder>(this TBuilder builder, ApiKeyScopes scope) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new ApiScopeMetadata(scope));

    public static ApiKeyScopes Required(Endpoint? endpoint) => endpoint?.Metadata.GetMetadata<ApiScopeMetadata>()?.Scope ?? Default;

    public static ApiKeyScopes Of(ClaimsPrincipal user) =>
        int.TryParse(user.FindFirstValue(Claim), out var v) ? (ApiKeyScopes)v & ApiKeyScopes.All : ApiKeyScopes.None;

    /// <summary>Wire names, e.g. <c>["inference","manage"]</c>.</summary>
    public static IReadOnlyList<string> Names(ApiKeyScopes scopes)
    {
        var names = new List<string>(2);
        if (scopes.HasFlag(ApiKeyScopes.Inference)) names.Add("inference");
        if (scopes.HasFlag(ApiKeyScopes.Manage)) names.Add("manage");
        return names;
    }

    public static bool TryParse(string? name, out ApiKeyScopes scope)
    {
        scope = name?.Trim().ToLowerInvariant() switch { "inference" => ApiKeyScopes.Inference, "manage" => ApiKeyScopes.Manage, _ => ApiKeyScopes.None };
        return scope != ApiKeyScopes.None;
    }
}

/// <summary>Part of the API key policy: the key holds the scope its endpoint requires.</summary>
internal sealed class ScopeRequirement : IAuthorizationRequirement;

internal sealed class ScopeAuthorizationHandler : AuthorizationHandler<ScopeRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, ScopeRequirement requirement)
    {
        if (context.Resource is not HttpContext http) return Task.CompletedTask;
        var required = ApiScopes.Required(http.GetEndpoint());
        if ((ApiScopes.Of(context.User) & required) == required) context.Succeed(requirement);
        else http.Items[ApiScopes.MissingItem] = required;
        return Task.CompletedTask;
    }
}
