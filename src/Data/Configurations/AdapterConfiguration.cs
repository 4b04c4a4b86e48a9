using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class AdapterConfiguration : IEntityTypeConfiguration<Adapter>
{
    public void Configure(EntityTypeBuilder<Adapter> b)
    {
        b.ToTable("adapters");
        b.HasKey(a => a.Id);
        b.Property(a => a.Name).HasMaxLength(200).IsRequired();
        b.HasIndex(a => new { a.TenantId, a.Name }).IsUnique();
        b.Property(a => a.TargetModules).HasMaxLength(500).IsRequired();
        b.Property(a => a.BlobSha256).HasMaxLength(64).IsRequired();
        // Blob collection and deletes look rows up by content hash.
        b.HasIndex(a => a.BlobSha256);
        b.HasOne<Tenant>().WithMany().HasForeignKey(a => a.TenantId).OnDelete(DeleteBehavior.Cascade);
        b.HasOne(a => a.BaseModel).WithMany().HasForeignKey(a => a.BaseModelId).OnDelete(DeleteBehavior.Restrict);
    }
}
