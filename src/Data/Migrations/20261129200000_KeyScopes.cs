using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>API keys carry scopes (1 = inference, 2 = manage; existing keys keep both) and an optional expiry.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129200000_KeyScopes")]
public partial class KeyScopes : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.AddColumn<int>("Scopes", "api_keys", "integer", nullable: false, defaultValue: 3);
        m.AddColumn<DateTimeOffset>("ExpiresAt", "api_keys", "timestamp with time zone", nullable: true);
    }

    protected override void Down(MigrationBuilder m)
    {
        m.DropColumn("ExpiresAt", "api_keys");
        m.DropColumn("Scopes", "api_keys");
    }
}
