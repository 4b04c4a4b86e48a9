using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;

namespace Loom.Data.Tenancy;

/// <summary>A write of a tenant-owned row that the current tenant does not own; nothing was saved.</summary>
public sealed class TenantWriteException(string message) : InvalidOperationException(message);

/// <summary>
/// The write-side twin of the query filter: before SaveChanges, every added, modified or deleted
/// <see cref="ITenantOwned"/> row must belong to the current tenant, before and after the change.
/// Work that legitimately spans tenants (a roll-up, a garbage collector) opens
/// <see cref="PlatformDbContext.WritingAcrossTenants"/> for the one save that needs it.
/// </summary>
internal static class TenantWriteGuard
{
    public static void Check(ChangeTracker tracker, Guid? current)
    {
        foreach (var entry in tracker.Entries<ITenantOwned>())
        {
            if (entry.State is not (EntityState.Added or EntityState.Modified or EntityState.Deleted)) continue;
            var property = entry.Property(e => e.TenantId);
            var after = property.CurrentValue;
            var before = entry.State == EntityState.Added ? after : property.OriginalValue;
            if (current is { } tenant && after == tenant && before == tenant) continue;

            var what = entry.State switch { EntityState.Added => "insert", EntityState.Modified => "update", _ => "delete" };
            var table = entry.Metadata.GetTableName() ?? entry.Metadata.ClrType.Name;
            throw new TenantWriteException(current is null
                ? $"Refused to {what} a row of '{table}' without a current tenant."
                : $"Refused to {what} a row of '{table}' owned by another tenant than the current one.");
        }
    }
}
