using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>API keys carry a default scheduling priority (1 = interactive, 0 = batch).</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261122010000_KeyPriority")]
public partial class KeyPriority : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.AddColumn<int>("Priority", "api_keys", "integer", nullable: false, defaultValue: 1);

    protected override void Down(MigrationBuilder m) => m.DropColumn("Priority", "api_keys");
}
