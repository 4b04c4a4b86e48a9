using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

namespace Loom.Data.Migrations;

/// <summary>
/// The jobs tier moves from Quartz to Hangfire (whose tables live in their own schema, created by Hangfire at
/// start): drops Quartz's tables; adds the job-event stream, the daily usage roll-up and its watermark, a request
/// id on usage rows (a retried write inserts once), and indexes on the blob hash columns (blob collection).
/// </summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129100000_JobsTier")]
public partial class JobsTier : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.Sql("""
            DO $$ DECLARE r record; BEGIN
              FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'qrtz\_%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
              END LOOP;
            END $$;
            """);

        m.CreateTable("job_events", t => new
        {
            Id = t.Column<long>("bigint", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            JobId = t.Column<string>("character varying(100)", maxLength: 100, nullable: false),
            Seq = t.Column<long>("bigint", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            Kind = t.Column<string>("character varying(50)", maxLength: 50, nullable: false),
            Payload = t.Column<string>("jsonb", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_job_events", x => x.Id);
            t.ForeignKey("FK_job_events_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });
        m.CreateIndex("IX_job_events_TenantId_JobId_Seq", "job_events", ["TenantId", "JobId", "Seq"], unique: true);

        m.CreateTable("usage_daily", t => new
        {
            TenantId = t.Column<Guid>("uuid", nullable: false),
            Day = t.Column<DateOnly>("date", nullable: false),
            Model = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            Requests = t.Column<int>("integer", nullable: false),
            PromptTokens = t.Column<long>("bigint", nullable: false),
            CompletionTokens = t.Column<long>("bigint", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_usage_daily", x => new { x.TenantId, x.Day, x.Model });
            t.ForeignKey("FK_usage_daily_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("usage_rollup_state", t => new
        {
            Id = t.Column<int>("integer", nullable: false),
            RolledUpTo = t.Column<DateOnly>("date", nullable: false),
            UpdatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t => t.PrimaryKey("PK_usage_rollup_state", x => x.Id));

        m.AddColumn<Guid>("RequestId", "usage_records", "uuid", nullable: false, defaultValueSql: "gen_random_uuid()");
        m.Sql("""ALTER TABLE usage_records ALTER COLUMN "RequestId" DROP DEFAULT""");
        m.CreateIndex("IX_usage_records_RequestId", "usage_records", "RequestId", unique: true);
        m.CreateIndex("IX_usage_records_CreatedAt", "usage_records", "CreatedAt");

        m.CreateIndex("IX_adapters_BlobSha256", "adapters", "BlobSha256");
        m.CreateIndex("IX_files_BlobSha256", "files", "BlobSha256");
    }

    protected override void Down(MigrationBuilder m)
    {
        m.DropIndex("IX_files_BlobSha256", "files");
        m.DropIndex("IX_adapters_BlobSha256", "adapters");
        m.DropIndex("IX_usage_records_CreatedAt", "usage_records");
        m.DropIndex("IX_usage_records_RequestId", "usage_records");
        m.DropColumn("RequestId", "usage_records");
        m.DropTable("usage_rollup_state");
        m.DropTable("usage_daily");
        m.DropTable("job_events");
    }
}
