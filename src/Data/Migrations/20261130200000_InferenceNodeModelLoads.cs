using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>An inference node reports the load of each base model's engine (running + waiting sequences, in the order
/// of its Models), so an API node routes a request on the load of the engine that will run it.</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261130200000_InferenceNodeModelLoads")]
public partial class InferenceNodeModelLoads : Migration
{
    protected override void Up(MigrationBuilder m) =>
        m.AddColumn<int[]>("ModelLoads", "inference_nodes", "integer[]", nullable: false, defaultValueSql: "'{}'::integer[]");

    protected override void Down(MigrationBuilder m) => m.DropColumn("ModelLoads", "inference_nodes");
}
