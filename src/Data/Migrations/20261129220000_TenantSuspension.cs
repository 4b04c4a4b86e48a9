using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>Tenants can be suspended by an administrator (null: active).</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129220000_TenantSuspension")]
public partial class TenantSuspension : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.AddColumn<DateTimeOffset>("SuspendedAt", "tenants", "timestamp with time zone", nullable: true);

    protected override void Down(MigrationBuilder m) => m.DropColumn("SuspendedAt", "tenants");
}
