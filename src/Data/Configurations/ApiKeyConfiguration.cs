using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class ApiKeyConfiguration : IEntityTypeConfiguration<ApiKey>
{
    public void Configure(EntityTypeBuilder<ApiKey> b)
    {
        b.ToTable("api_keys");
        b.HasKey(k => k.Id);
        b.Property(k => k.Name).HasMaxLength(200).IsRequired();
        b.Property(k => k.Prefix).HasMaxLength(32).IsRequired();
        b.Property(k => k.SecretHash).IsRequired();
        b.HasIndex(k => k.SecretHash).IsUnique();
        b.HasIndex(k => k.TenantId);
        b.Ignore(k => k.IsRevoked);
        // The column default serves rows that existed before the column; EF always writes the value
        // (the sentinel never occurs), so an explicit Batch (0, the CLR default) is not replaced by it.
        b.Property(k => k.Priority).HasDefaultValue(RequestPriority.Interactive).HasSentinel((RequestPriority)(-1));
        // Keys that existed before scopes could do everything; they keep that (revoke them to narrow it).
        b.Property(k => k.Scopes).HasDefaultValue(ApiKeyScopes.All).HasSentinel((ApiKeyScopes)(-1));
        b.HasOne<Tenant>().WithMany().HasForeignKey(k => k.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
