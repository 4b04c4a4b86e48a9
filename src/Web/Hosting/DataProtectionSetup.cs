using Microsoft.AspNetCore.DataProtection;

namespace Loom.Web.Hosting;

internal static class DataProtectionSetup
{
    /// <summary>
    /// Keys that protect sign-in cookies and antiforgery tokens. With Loom:DataProtection:KeysPath set they
    /// are kept in that folder, so sign-ins survive a restart and nodes sharing the folder accept each
    /// other's cookies; without it they live in memory (tests) and every restart signs users out.
    /// </summary>
    public static IServiceCollection AddLoomDataProtection(this IServiceCollection services, IConfiguration configuration)
    {
        var builder = services.AddDataProtection().SetApplicationName("loom");
        if (configuration["Loom:DataProtection:KeysPath"] is { Length: > 0 } path)
            builder.PersistKeysToFileSystem(new DirectoryInfo(path));
        return services;
    }
}
