using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

namespace Loom.Data.Migrations;

/// <summary>The audit log: who did what to which key, adapter, file, fine-tune, tenant or user, from which address.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129200100_AuditLog")]
public partial class AuditLog : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.CreateTable("audit_log", t => new
        {
            Id = t.Column<long>("bigint", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            At = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: true),
            ActorKind = t.Column<string>("character varying(32)", maxLength: 32, nullable: false),
            ActorId = t.Column<string>("character varying(64)", maxLength: 64, nullable: true),
            ActorName = t.Column<string>("character varying(200)", maxLength: 200, nullable: true),
            Action = t.Column<string>("character varying(64)", maxLength: 64, nullable: false),
            TargetKind = t.Column<string>("character varying(32)", maxLength: 32, nullable: true),
            TargetId = t.Column<string>("character varying(64)", maxLength: 64, nullable: true),
            Ip = t.Column<string>("character varying(64)", maxLength: 64, nullable: true),
            Detail = t.Column<string>("character varying(500)", maxLength: 500, nullable: true),
        }, constraints: t => t.PrimaryKey("PK_audit_log", x => x.Id));
        m.CreateIndex("IX_audit_log_At", "audit_log", "At");
        m.CreateIndex("IX_audit_log_TenantId_At", "audit_log", ["TenantId", "At"]);
    }

    protected override void Down(MigrationBuilder m) => m.DropTable("audit_log");
}
