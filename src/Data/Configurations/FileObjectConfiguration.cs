using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class FileObjectConfiguration : IEntityTypeConfiguration<FileObject>
{
    public void Configure(EntityTypeBuilder<FileObject> b)
    {
        b.ToTable("files");
        b.HasKey(f => f.Id);
        b.Property(f => f.FileName).HasMaxLength(500).IsRequired();
        b.Property(f => f.Purpose).HasMaxLength(50).IsRequired();
        b.Property(f => f.BlobSha256).HasMaxLength(64).IsRequired();
        // Blob collection and deletes look rows up by content hash.
        b.HasIndex(f => f.BlobSha256);
        b.HasIndex(f => f.TenantId);
        b.HasOne<Tenant>().WithMany().HasForeignKey(f => f.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
