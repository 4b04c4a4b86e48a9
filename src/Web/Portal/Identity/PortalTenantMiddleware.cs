using Loom.Data.Audit;
using Loom.Data.Tenancy;

namespace Loom.Web.Portal.Identity;

/// <summary>For server-rendered portal requests: the request's tenant is the signed-in user's tenant.</summary>
public sealed class PortalTenantMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context, TenantContext tenant, AuditActor actor)
    {
        if (tenant.TenantId is null && PortalUser.TenantOf(context.User) is { } id)
        {
            tenant.TenantId = id;
            actor.Set("user", context.User.FindFirst(System.Security.Claims.ClaimTypes.NameIdentifier)?.Value, context.User.Identity?.Name,
                context.Connection.RemoteIpAddress?.ToString());
        }
        return next(context);
    }
}
