using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace Loom.Data.Migrations;

/// <summary>Fine-tuning jobs (with the lease that keeps two runs of one job from training at once) and their
/// checkpoints (each a blob, kept by blob collection while its row exists).</summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261129300000_FineTuning")]
public partial class FineTuning : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.CreateTable("fine_tune_jobs", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            Model = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            BaseModelId = t.Column<Guid>("uuid", nullable: false),
            InitialAdapterId = t.Column<Guid>("uuid", nullable: true),
            TrainingFileId = t.Column<Guid>("uuid", nullable: false),
            ValidationFileId = t.Column<Guid>("uuid", nullable: true),
            Suffix = t.Column<string>("character varying(64)", maxLength: 64, nullable: true),
            Seed = t.Column<long>("bigint", nullable: false),
            Epochs = t.Column<int>("integer", nullable: false),
            BatchSize = t.Column<int>("integer", nullable: false),
            LearningRateMultiplier = t.Column<double>("double precision", nullable: false),
            Rank = t.Column<int>("integer", nullable: false),
            Alpha = t.Column<double>("double precision", nullable: false),
            TargetModules = t.Column<string>("character varying(500)", maxLength: 500, nullable: false),
            Status = t.Column<string>("character varying(32)", maxLength: 32, nullable: false),
            RequestedAction = t.Column<string>("character varying(32)", maxLength: 32, nullable: true),
            TrainedTokens = t.Column<long>("bigint", nullable: false),
            Step = t.Column<int>("integer", nullable: false),
            TotalSteps = t.Column<int>("integer", nullable: false),
            EstimatedFinish = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
            FineTunedModel = t.Column<string>("character varying(200)", maxLength: 200, nullable: true),
            ResultAdapterId = t.Column<Guid>("uuid", nullable: true),
            ErrorCode = t.Column<string>("character varying(100)", maxLength: 100, nullable: true),
            ErrorMessage = t.Column<string>("character varying(2000)", maxLength: 2000, nullable: true),
            ErrorParam = t.Column<string>("character varying(100)", maxLength: 100, nullable: true),
            LeaseOwner = t.Column<string>("character varying(200)", maxLength: 200, nullable: true),
            LeaseExpiresAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            StartedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
            FinishedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_fine_tune_jobs", x => x.Id);
            t.ForeignKey("FK_fine_tune_jobs_base_models_BaseModelId", x => x.BaseModelId, "base_models", "Id", onDelete: ReferentialAction.Restrict);
            t.ForeignKey("FK_fine_tune_jobs_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });
        m.CreateIndex("IX_fine_tune_jobs_BaseModelId", "fine_tune_jobs", "BaseModelId");
        m.CreateIndex("IX_fine_tune_jobs_TenantId_CreatedAt", "fine_tune_jobs", ["TenantId", "CreatedAt"]);
        m.CreateIndex("IX_fine_tune_jobs_TenantId_Status", "fine_tune_jobs", ["TenantId", "Status"]);

        m.CreateTable("fine_tune_checkpoints", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            JobId = t.Column<Guid>("uuid", nullable: false),
            Step = t.Column<int>("integer", nullable: false),
            TrainLoss = t.Column<double>("double precision", nullable: false),
            ValidationLoss = t.Column<double>("double precision", nullable: true),
            TrainedTokens = t.Column<long>("bigint", nullable: false),
            BlobSha256 = t.Column<string>("character varying(64)", maxLength: 64, nullable: false),
            SizeBytes = t.Column<long>("bigint", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_fine_tune_checkpoints", x => x.Id);
            t.ForeignKey("FK_fine_tune_checkpoints_fine_tune_jobs_JobId", x => x.JobId, "fine_tune_jobs", "Id", onDelete: ReferentialAction.Cascade);
            t.ForeignKey("FK_fine_tune_checkpoints_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });
        m.CreateIndex("IX_fine_tune_checkpoints_BlobSha256", "fine_tune_checkpoints", "BlobSha256");
        m.CreateIndex("IX_fine_tune_checkpoints_JobId_Step", "fine_tune_checkpoints", ["JobId", "Step"], unique: true);
        m.CreateIndex("IX_fine_tune_checkpoints_TenantId", "fine_tune_checkpoints", "TenantId");
    }

    protected override void Down(MigrationBuilder m)
    {
        m.DropTable("fine_tune_checkpoints");
        m.DropTable("fine_tune_jobs");
    }
}
