using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class FineTuneJobConfiguration : IEntityTypeConfiguration<FineTuneJob>
{
    public void Configure(EntityTypeBuilder<FineTuneJob> b)
    {
        b.ToTable("fine_tune_jobs");
        b.HasKey(j => j.Id);
        b.Property(j => j.Model).HasMaxLength(200).IsRequired();
        b.Property(j => j.Suffix).HasMaxLength(64);
        b.Property(j => j.TargetModules).HasMaxLength(500).IsRequired();
        b.Property(j => j.Status).HasMaxLength(32).IsRequired();
        b.Property(j => j.RequestedAction).HasMaxLength(32);
        b.Property(j => j.FineTunedModel).HasMaxLength(200);
        b.Property(j => j.ErrorCode).HasMaxLength(100);
        b.Property(j => j.ErrorMessage).HasMaxLength(2000);
        b.Property(j => j.ErrorParam).HasMaxLength(100);
        b.Property(j => j.LeaseOwner).HasMaxLength(200);
        // Listing newest first per tenant; counting a tenant's active jobs.
        b.HasIndex(j => new { j.TenantId, j.CreatedAt });
        b.HasIndex(j => new { j.TenantId, j.Status });
        b.HasOne<Tenant>().WithMany().HasForeignKey(j => j.TenantId).OnDelete(DeleteBehavior.Cascade);
        b.HasOne(j => j.BaseModel).WithMany().HasForeignKey(j => j.BaseModelId).OnDelete(DeleteBehavior.Restrict);
    }
}
