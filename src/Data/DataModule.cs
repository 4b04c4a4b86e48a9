using Loom.Data.Audit;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Data;

/// <summary>Entry point of the data module: PostgreSQL through EF Core, tenant scoping, API keys.</summary>
public static class DataModule
{
    public const string ConnectionStringName = "Loom";

    public static IServiceCollection AddData(this IServiceCollection services, IConfiguration configuration)
    {
        var connectionString = configuration.GetConnectionString(ConnectionStringName)
            ?? throw new InvalidOperationException($"Connection string 'ConnectionStrings:{ConnectionStringName}' is not configured.");
        services.AddOptions<DataOptions>().BindConfiguration("Data");
        services.AddSingleton(TimeProvider.System);
        services.AddScoped<TenantContext>();
        services.AddScoped<ITenantContext>(sp => sp.GetRequiredService<TenantContext>());
        services.AddDbContext<PlatformDbContext>(o => Configure(o, connectionString));
        services.AddScoped<ApiKeyService>();
        services.AddScoped<AuditActor>();
        services.AddScoped<AuditLog>();
        // Identity stores for portal users; the portal adds sign-in and cookies on top.
        services.AddIdentityCore<LoomUser>(o =>
            {
                o.User.RequireUniqueEmail = false;
                o.Password.RequiredLength = 8;
                o.Password.RequireNonAlphanumeric = false;
            })
            .AddRoles<IdentityRole<Guid>>()
            .AddEntityFrameworkStores<PlatformDbContext>();
        services.AddSingleton<DatabaseMigrator>();
        services.AddOptions<BlobStoreOptions>().BindConfiguration("Loom:Blobs");
        services.AddSingleton<IBlobStore, FileSystemBlobStore>();
        return services;
    }

    /// <summary>The options every PlatformDbContext uses (also used by tests that build one by hand).</summary>
    public static void Configure(DbContextOptionsBuilder options, string connectionString) =>
        options.UseNpgsql(connectionString, npgsql => npgsql.MigrationsHistoryTable("__ef_migrations_history"))
            // Migrations are hand-written (no design-time package here); the schema-drift test guards them.
            .ConfigureWarnings(w => w.Ignore(RelationalEventId.PendingModelChangesWarning));
}
