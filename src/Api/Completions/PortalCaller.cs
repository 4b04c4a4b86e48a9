using Loom.Data.Entities;
using Loom.Data.Keys;

namespace Loom.Api.Completions;

/// <summary>
/// A signed-in portal user's completions (the playground) run through <see cref="CompletionService"/> as their
/// tenant, under the tenant's limits and share, without an API key: the caller's key has the empty id and its
/// usage rows carry no key.
/// </summary>
internal static class PortalCaller
{
    public static AuthenticatedKey For(Tenant tenant) => new(
        new ApiKey { Id = Guid.Empty, TenantId = tenant.Id, Name = "portal", Prefix = "", SecretHash = [], Priority = RequestPriority.Interactive },
        tenant.RequestsPerMinute, tenant.TokensPerMinute, tenant.ShareWeight);

    public static bool IsPortal(AuthenticatedKey key) => key.Key.Id == Guid.Empty;
}
