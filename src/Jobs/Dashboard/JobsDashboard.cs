using Hangfire;
using Hangfire.Dashboard;
using Microsoft.AspNetCore.Builder;

namespace Loom.Jobs.Dashboard;

/// <summary>Hangfire's dashboard at <see cref="Path"/>, for portal administrators only.</summary>
public static class JobsDashboard
{
    public const string Path = "/admin/jobs";

    /// <summary>Mount after authentication, so the portal cookie has made the request's user.</summary>
    public static IApplicationBuilder UseJobsDashboard(this IApplicationBuilder app, string adminRole) =>
        app.UseHangfireDashboard(Path, new DashboardOptions
        {
            Authorization = [new RoleAuthorizationFilter(adminRole)],
            AppPath = "/",
            DashboardTitle = "Loom jobs",
            DisplayStorageConnectionString = false,
        });

    /// <summary>Refuses anyone not signed in with the role: Hangfire answers 401 when not signed in, 403 otherwise.</summary>
    private sealed class RoleAuthorizationFilter(string role) : IDashboardAuthorizationFilter
    {
        public bool Authorize(DashboardContext context)
        {
            var user = context.GetHttpContext().User;
            return user.Identity?.IsAuthenticated == true && user.IsInRole(role);
        }
    }
}
