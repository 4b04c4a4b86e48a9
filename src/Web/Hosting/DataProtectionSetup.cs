using Loom.Data;
using Microsoft.AspNetCore.DataProtection;

namespace Loom.Web.Hosting;

internal static class DataProtectionSetup
{
    /// <summary>
    /// Keys that protect sign-in cookies and antiforgery tokens live in the platform database (table
    /// <c>data_protection_keys</c>), so every web node on that database accepts the others' cookies and a restart
    /// signs nobody out. The key ring is read through a fresh scope of <see cref="PlatformDbContext"/> (no tenant).
    /// </summary>
    public static IServiceCollection AddLoomDataProtection(this IServiceCollection services)
    {
        services.AddDataProtection().SetApplicationName("loom").PersistKeysToDbContext<PlatformDbContext>();
        return services;
    }
}
