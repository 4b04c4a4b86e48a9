using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class JobEventConfiguration : IEntityTypeConfiguration<JobEvent>
{
    public void Configure(EntityTypeBuilder<JobEvent> b)
    {
        b.ToTable("job_events");
        b.HasKey(e => e.Id);
        b.Property(e => e.Id).UseIdentityByDefaultColumn();
        b.Property(e => e.JobId).HasMaxLength(100).IsRequired();
        b.Property(e => e.Kind).HasMaxLength(50).IsRequired();
        b.Property(e => e.Payload).HasColumnType("jsonb").IsRequired();
        b.HasIndex(e => new { e.TenantId, e.JobId, e.Seq }).IsUnique();
        b.HasOne<Tenant>().WithMany().HasForeignKey(e => e.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
