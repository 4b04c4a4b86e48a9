using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>The routing table of inference nodes: each node upserts its row (URL, models, load) on every heartbeat;
/// API nodes route over the rows with a recent heartbeat.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261130000000_InferenceNodes")]
public partial class InferenceNodes : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.CreateTable("inference_nodes", t => new
        {
            Id = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            InternalUrl = t.Column<string>("character varying(500)", maxLength: 500, nullable: false),
            Models = t.Column<string[]>("text[]", nullable: false),
            Running = t.Column<int>("integer", nullable: false),
            Waiting = t.Column<int>("integer", nullable: false),
            FreePages = t.Column<int>("integer", nullable: false),
            ResidentAdapters = t.Column<int>("integer", nullable: false),
            StartedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            HeartbeatAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t => t.PrimaryKey("PK_inference_nodes", x => x.Id));
        m.CreateIndex("IX_inference_nodes_HeartbeatAt", "inference_nodes", "HeartbeatAt");
    }

    protected override void Down(MigrationBuilder m) => m.DropTable("inference_nodes");
}
