using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class StoredResponseConfiguration : IEntityTypeConfiguration<StoredResponse>
{
    public void Configure(EntityTypeBuilder<StoredResponse> b)
    {
        b.ToTable("responses");
        b.HasKey(r => r.Id);
        b.Property(r => r.Id).HasMaxLength(64);
        b.Property(r => r.Model).HasMaxLength(200).IsRequired();
        b.Property(r => r.PreviousResponseId).HasMaxLength(64);
        b.Property(r => r.InputItems).HasColumnType("jsonb").IsRequired();
        b.Property(r => r.Body).HasColumnType("jsonb").IsRequired();
        b.HasIndex(r => new { r.TenantId, r.CreatedAt });
        // Expired rows are found by this index when they are removed.
        b.HasIndex(r => r.ExpiresAt);
        b.HasOne<Tenant>().WithMany().HasForeignKey(r => r.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
