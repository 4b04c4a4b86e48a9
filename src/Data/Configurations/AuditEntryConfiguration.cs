using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class AuditEntryConfiguration : IEntityTypeConfiguration<AuditEntry>
{
    public void Configure(EntityTypeBuilder<AuditEntry> b)
    {
        b.ToTable("audit_log");
        b.HasKey(e => e.Id);
        b.Property(e => e.Id).UseIdentityByDefaultColumn();
        b.Property(e => e.ActorKind).HasMaxLength(32).IsRequired();
        b.Property(e => e.ActorId).HasMaxLength(64);
        b.Property(e => e.ActorName).HasMaxLength(200);
        b.Property(e => e.Action).HasMaxLength(64).IsRequired();
        b.Property(e => e.TargetKind).HasMaxLength(32);
        b.Property(e => e.TargetId).HasMaxLength(64);
        b.Property(e => e.Ip).HasMaxLength(64);
        b.Property(e => e.Detail).HasMaxLength(500);
        b.HasIndex(e => e.At);
        b.HasIndex(e => new { e.TenantId, e.At });
    }
}
