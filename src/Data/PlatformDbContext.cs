using System.Reflection;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;

namespace Loom.Data;

/// <summary>
/// The platform's database. Mapping lives in one configuration class per entity; every
/// <see cref="ITenantOwned"/> entity gets a global query filter on the current tenant.
/// </summary>
public class PlatformDbContext(DbContextOptions<PlatformDbContext> options, ITenantContext tenant)
    : IdentityDbContext<LoomUser, IdentityRole<Guid>, Guid>(options)
{
    public DbSet<Tenant> Tenants => Set<Tenant>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();
    public DbSet<BaseModel> BaseModels => Set<BaseModel>();
    public DbSet<Adapter> Adapters => Set<Adapter>();
    public DbSet<FileObject> Files => Set<FileObject>();
    public DbSet<UsageRecord> UsageRecords => Set<UsageRecord>();

    /// <summary>Read by the query filters on every query (EF parameterises it per context instance).</summary>
    internal Guid? CurrentTenantId => tenant.TenantId;

    protected override void OnModelCreating(ModelBuilder builder)
    {
        base.OnModelCreating(builder);
        builder.ApplyConfigurationsFromAssembly(typeof(PlatformDbContext).Assembly);

        var apply = typeof(PlatformDbContext).GetMethod(nameof(ApplyTenantFilter), BindingFlags.NonPublic | BindingFlags.Instance)!;
        foreach (var type in builder.Model.GetEntityTypes().Select(e => e.ClrType).Where(typeof(ITenantOwned).IsAssignableFrom).ToList())
            apply.MakeGenericMethod(type).Invoke(this, [builder]);
    }

    private void ApplyTenantFilter<T>(ModelBuilder builder) where T : class, ITenantOwned =>
        builder.Entity<T>().HasQueryFilter(e => e.TenantId == CurrentTenantId);
}
