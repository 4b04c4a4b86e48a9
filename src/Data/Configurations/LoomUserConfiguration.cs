using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class LoomUserConfiguration : IEntityTypeConfiguration<LoomUser>
{
    public void Configure(EntityTypeBuilder<LoomUser> b)
    {
        b.HasIndex(u => u.TenantId);
        b.HasOne(u => u.Tenant).WithMany().HasForeignKey(u => u.TenantId).OnDelete(DeleteBehavior.Cascade);
    }
}
