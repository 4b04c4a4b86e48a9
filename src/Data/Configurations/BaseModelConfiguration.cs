using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Loom.Data.Configurations;

internal sealed class BaseModelConfiguration : IEntityTypeConfiguration<BaseModel>
{
    public void Configure(EntityTypeBuilder<BaseModel> b)
    {
        b.ToTable("base_models");
        b.HasKey(m => m.Id);
        b.Property(m => m.Name).HasMaxLength(200).IsRequired();
        b.HasIndex(m => m.Name).IsUnique();
        b.Property(m => m.Path).HasMaxLength(1000).IsRequired();
        b.Property(m => m.WeightFormat).HasMaxLength(16).IsRequired().HasDefaultValue("Auto");
    }
}
