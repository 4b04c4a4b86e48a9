using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>The model registry records how each base model's weights are held (inference nodes fill it from their
/// configuration at start, beside the name and folder).</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261130100000_BaseModelWeightFormat")]
public partial class BaseModelWeightFormat : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.AddColumn<string>("WeightFormat", "base_models", "character varying(16)", maxLength: 16, nullable: false, defaultValue: "Auto");

    protected override void Down(MigrationBuilder m) => m.DropColumn("WeightFormat", "base_models");
}
