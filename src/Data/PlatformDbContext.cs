using System.Reflection;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;

namespace Loom.Data;

/// <summary>
/// The platform's database. Mapping lives in one configuration class per entity; every
/// <see cref="ITenantOwned"/> entity gets a global query filter on the current tenant, and every save
/// refuses to insert, update or delete a tenant-owned row of another tenant (<see cref="TenantWriteGuard"/>).
/// </summary>
public class PlatformDbContext(DbContextOptions<PlatformDbContext> options, ITenantContext tenant)
    : IdentityDbContext<LoomUser, IdentityRole<Guid>, Guid>(options), IDataProtectionKeyContext
{
    public DbSet<Tenant> Tenants => Set<Tenant>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();
    public DbSet<BaseModel> BaseModels => Set<BaseModel>();
    public DbSet<Adapter> Adapters => Set<Adapter>();
    public DbSet<FileObject> Files => Set<FileObject>();
    public DbSet<UsageRecord> UsageRecords => Set<UsageRecord>();
    public DbSet<AuditEntry> AuditEntries => Set<AuditEntry>();
    public DbSet<UsageDaily> UsageDaily => Set<UsageDaily>();
    public DbSet<UsageRollupState> UsageRollupState => Set<UsageRollupState>();
    public DbSet<JobEvent> JobEvents => Set<JobEvent>();
    public DbSet<FineTuneJob> FineTuneJobs => Set<FineTuneJob>();
    public DbSet<FineTuneCheckpoint> FineTuneCheckpoints => Set<FineTuneCheckpoint>();
    /// <summary>The portal's data-protection key ring (sign-in cookies, antiforgery), shared by every web node.</summary>
    public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();
    public DbSet<StoredResponse> Responses => Set<StoredResponse>();
    /// <summary>Inference nodes by their last heartbeat: the routing table of API nodes.</summary>
    public DbSet<InferenceNode> InferenceNodes => Set<InferenceNode>();

    /// <summary>Read by the query filters on every query (EF parameterises it per context instance).</summary>
    internal Guid? CurrentTenantId => tenant.TenantId;

    private int _crossTenantWrites;

    /// <summary>
    /// Lets saves made until the returned handle is disposed write rows of any tenant (or none). For system work
    /// that spans tenants on purpose; request handlers never need it.
    /// </summary>
    public IDisposable WritingAcrossTenants()
    {
        _crossTenantWrites++;
        return new CrossTenantWrites(this);
    }

    public override int SaveChanges(bool acceptAllChangesOnSuccess)
    {
        if (_crossTenantWrites == 0) TenantWriteGuard.Check(ChangeTracker, CurrentTenantId);
        return base.SaveChanges(acceptAllChangesOnSuccess);
    }

    public override Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default)
    {
        if (_crossTenantWrites == 0) TenantWriteGuard.Check(ChangeTracker, CurrentTenantId);
        return base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken);
    }

    private sealed class CrossTenantWrites(PlatformDbContext db) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            db._crossTenantWrites--;
        }
    }

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
