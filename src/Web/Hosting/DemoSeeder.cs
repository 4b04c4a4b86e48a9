using System.Security.Cryptography;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Hosting;

/// <summary>
/// First-start demo data: a tenant, an admin user and one API key (secret kept in a mode-600 file).
/// Idempotent: later starts only print where the key is.
/// </summary>
internal sealed class DemoSeeder(
    PlatformDbContext db, TenantContext tenantContext, UserManager<LoomUser> users, RoleManager<IdentityRole<Guid>> roles,
    ApiKeyService keys, TimeProvider clock, ILogger<DemoSeeder> logger)
{
    /// <summary>Where the one-time secrets are printed: the process's own standard output.</summary>
    private readonly TextWriter terminal = Console.Out;

    public async Task SeedAsync(SeedOptions options, CancellationToken ct = default)
    {
        if (!options.Demo) return;

        var tenant = await db.Tenants.SingleOrDefaultAsync(t => t.Name == options.TenantName, ct);
        if (tenant is null)
        {
            tenant = new Tenant { Id = Guid.NewGuid(), Name = options.TenantName, CreatedAt = clock.GetUtcNow() };
            db.Tenants.Add(tenant);
            await db.SaveChangesAsync(ct);
            logger.LogInformation("Seeded demo tenant '{Tenant}'", tenant.Name);
        }
        tenantContext.TenantId = tenant.Id;

        await EnsureAdminAsync(options, tenant, ct);

        if (File.Exists(options.ApiKeyFile))
        {
            logger.LogInformation("Demo API key: see {KeyFile}", Path.GetFullPath(options.ApiKeyFile));
            return;
        }
        // The demo key can do everything a tenant can, through the API alone.
        var created = await keys.CreateAsync(tenant.Id, new NewApiKey("demo key", Scopes: ApiKeyScopes.All), ct);
        WriteSecretFile(options.ApiKeyFile, created.Secret + "\n");
        // The secret goes to the terminal that started Loom, never through logging (log sinks are kept and shipped).
        terminal.WriteLine($"Demo API key (shown once, also saved to {Path.GetFullPath(options.ApiKeyFile)}): {created.Secret}");
        logger.LogWarning("Created the demo API key {Prefix}... (secret saved to {KeyFile})", created.Key.Prefix, Path.GetFullPath(options.ApiKeyFile));
    }

    private async Task EnsureAdminAsync(SeedOptions options, Tenant tenant, CancellationToken ct)
    {
        if (!await roles.RoleExistsAsync(LoomIdentity.AdminRole))
            Check(await roles.CreateAsync(new IdentityRole<Guid>(LoomIdentity.AdminRole)), "create the admin role");
        if (await users.FindByNameAsync(options.AdminUser) is not null) return;

        var password = options.AdminPassword ?? NewPassword();
        var user = new LoomUser { Id = Guid.NewGuid(), UserName = options.AdminUser, TenantId = tenant.Id };
        Check(await users.CreateAsync(user, password), $"create user '{options.AdminUser}'");
        Check(await users.AddToRoleAsync(user, LoomIdentity.AdminRole), "grant the admin role");
        if (options.AdminPassword is null)
        {
            var file = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.ApiKeyFile))!, "demo-admin");
            WriteSecretFile(file, $"user: {options.AdminUser}\npassword: {password}\n");
            terminal.WriteLine($"Demo admin user '{options.AdminUser}' with password {password} (also saved to {file})");
            logger.LogWarning("Created the demo admin user '{User}' (password saved to {File})", options.AdminUser, file);
        }
        _ = ct;
    }

    private static void WriteSecretFile(string path, string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, content);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>Random, and meets Identity's default rules (upper, lower, digit, symbol).</summary>
    private static string NewPassword() => "Loom-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(9)) + "-X9";

    private static void Check(IdentityResult result, string what)
    {
        if (!result.Succeeded)
            throw new InvalidOperationException($"Could not {what}: {string.Join("; ", result.Errors.Select(e => e.Description))}");
    }
}

internal static class DemoSeederExtensions
{
    /// <summary>Seeds when Loom:Seed:Demo is set; false (after one log line) when seeding is impossible.</summary>
    public static async Task<bool> SeedAsync(this WebApplication app)
    {
        var options = app.Configuration.GetSection("Loom:Seed").Get<SeedOptions>() ?? new SeedOptions();
        if (!options.Demo) return true;
        await using var scope = app.Services.CreateAsyncScope();
        var seeder = ActivatorUtilities.CreateInstance<DemoSeeder>(scope.ServiceProvider);
        try
        {
            await seeder.SeedAsync(options);
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            app.Logger.LogCritical("Could not seed the demo data: {Reason}", e.Message);
            return false;
        }
    }
}
