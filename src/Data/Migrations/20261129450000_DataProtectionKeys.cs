using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

namespace Loom.Data.Migrations;

/// <summary>The portal's data-protection key ring in the database, so every web node reads the same keys: a sign-in
/// (or an antiforgery token) made on one node is accepted by the others, and survives restarts.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129450000_DataProtectionKeys")]
public partial class DataProtectionKeys : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.CreateTable("data_protection_keys", t => new
        {
            Id = t.Column<int>("integer", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            FriendlyName = t.Column<string>("text", nullable: true),
            Xml = t.Column<string>("text", nullable: true),
        }, constraints: t => t.PrimaryKey("PK_data_protection_keys", x => x.Id));

    protected override void Down(MigrationBuilder m) => m.DropTable("data_protection_keys");
}
