using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class UsageRecordConfiguration : IEntityTypeConfiguration<UsageRecord>
{
    public void Configure(EntityTypeBuilder<UsageRecord> b)
    {
        b.ToTable("usage_records");
        b.HasKey(u => u.Id);
        b.Property(u => u.Id).UseIdentityByDefaultColumn();
        b.Property(u => u.Model).HasMaxLength(200).IsRequired();
        b.HasIndex(u => new { u.TenantId, u.CreatedAt });
        b.HasIndex(u => u.RequestId).IsUnique();
        b.HasIndex(u => u.CreatedAt);
        b.HasOne<Tenant>().WithMany().HasForeignKey(u => u.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
