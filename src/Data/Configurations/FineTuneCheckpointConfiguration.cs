using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class FineTuneCheckpointConfiguration : IEntityTypeConfiguration<FineTuneCheckpoint>
{
    public void Configure(EntityTypeBuilder<FineTuneCheckpoint> b)
    {
        b.ToTable("fine_tune_checkpoints");
        b.HasKey(c => c.Id);
        b.Property(c => c.BlobSha256).HasMaxLength(64).IsRequired();
        b.HasIndex(c => new { c.JobId, c.Step }).IsUnique();
        // Blob collection looks rows up by content hash.
        b.HasIndex(c => c.BlobSha256);
        b.HasOne<Tenant>().WithMany().HasForeignKey(c => c.TenantId).OnDelete(DeleteBehavior.Cascade);
        b.HasOne<FineTuneJob>().WithMany().HasForeignKey(c => c.JobId).OnDelete(DeleteBehavior.Cascade);
    }
}
