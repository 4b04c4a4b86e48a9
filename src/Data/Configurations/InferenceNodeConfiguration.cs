using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

/// <summary>The routing table of inference nodes: one row per node, rewritten by its heartbeat. Platform-wide (no tenant).</summary>
internal sealed class InferenceNodeConfiguration : IEntityTypeConfiguration<InferenceNode>
{
    public void Configure(EntityTypeBuilder<InferenceNode> b)
    {
        b.ToTable("inference_nodes");
        b.HasKey(n => n.Id);
        b.Property(n => n.Id).HasMaxLength(200);
        b.Property(n => n.InternalUrl).HasMaxLength(500).IsRequired();
        b.Property(n => n.Models).IsRequired();
        b.Property(n => n.ModelLoads).IsRequired().HasDefaultValueSql("'{}'::integer[]");
        b.HasIndex(n => n.HeartbeatAt);
    }
}
