using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>Stored responses of POST /v1/responses (tenant-owned, with an expiry).</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129500000_Responses")]
public partial class Responses : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.CreateTable("responses", t => new
        {
            Id = t.Column<string>("character varying(64)", maxLength: 64, nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            Model = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            PreviousResponseId = t.Column<string>("character varying(64)", maxLength: 64, nullable: true),
            Depth = t.Column<int>("integer", nullable: false),
            InputItems = t.Column<string>("jsonb", nullable: false),
            Body = t.Column<string>("jsonb", nullable: false),
            SizeBytes = t.Column<int>("integer", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            ExpiresAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_responses", x => x.Id);
            t.ForeignKey("FK_responses_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });
        m.CreateIndex("IX_responses_TenantId_CreatedAt", "responses", ["TenantId", "CreatedAt"]);
        m.CreateIndex("IX_responses_ExpiresAt", "responses", "ExpiresAt");
    }

    protected override void Down(MigrationBuilder m) => m.DropTable("responses");
}
