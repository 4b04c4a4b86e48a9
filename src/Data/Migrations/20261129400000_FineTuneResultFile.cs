using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>A fine-tuning job's result file (its metrics CSV, purpose <c>fine-tune-results</c>), or null.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129400000_FineTuneResultFile")]
public partial class FineTuneResultFile : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.AddColumn<Guid>("ResultFileId", "fine_tune_jobs", "uuid", nullable: true);

    protected override void Down(MigrationBuilder m) => m.DropColumn("ResultFileId", "fine_tune_jobs");
}
