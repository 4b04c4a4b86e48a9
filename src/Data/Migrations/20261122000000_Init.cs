using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

namespace Loom.Data.Migrations;

/// <summary>
/// Initial schema: tenants, API keys, Identity users and roles, base models, adapters, files, usage.
/// Hand-written (the EF design-time package is not available); SchemaDriftTests compares the result
/// with the schema EF would create from the model.
/// </summary>
[DbContext(typeof(PlatformDbContext))]
[Migration("20261122000000_Init")]
public partial class Init : Migration
{
    protected override void Up(MigrationBuilder m)
    {
        m.CreateTable("AspNetRoles", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            Name = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            NormalizedName = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            ConcurrencyStamp = t.Column<string>("text", nullable: true),
        }, constraints: t => t.PrimaryKey("PK_AspNetRoles", x => x.Id));

        m.CreateTable("base_models", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            Name = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            Path = t.Column<string>("character varying(1000)", maxLength: 1000, nullable: false),
            ContextLength = t.Column<int>("integer", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t => t.PrimaryKey("PK_base_models", x => x.Id));

        m.CreateTable("tenants", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            Name = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            ShareWeight = t.Column<double>("double precision", nullable: false, defaultValue: 1.0),
            RequestsPerMinute = t.Column<int>("integer", nullable: true),
            TokensPerMinute = t.Column<int>("integer", nullable: true),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t => t.PrimaryKey("PK_tenants", x => x.Id));

        m.CreateTable("AspNetRoleClaims", t => new
        {
            Id = t.Column<int>("integer", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            RoleId = t.Column<Guid>("uuid", nullable: false),
            ClaimType = t.Column<string>("text", nullable: true),
            ClaimValue = t.Column<string>("text", nullable: true),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetRoleClaims", x => x.Id);
            t.ForeignKey("FK_AspNetRoleClaims_AspNetRoles_RoleId", x => x.RoleId, "AspNetRoles", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("AspNetUsers", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            UserName = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            NormalizedUserName = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            Email = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            NormalizedEmail = t.Column<string>("character varying(256)", maxLength: 256, nullable: true),
            EmailConfirmed = t.Column<bool>("boolean", nullable: false),
            PasswordHash = t.Column<string>("text", nullable: true),
            SecurityStamp = t.Column<string>("text", nullable: true),
            ConcurrencyStamp = t.Column<string>("text", nullable: true),
            PhoneNumber = t.Column<string>("text", nullable: true),
            PhoneNumberConfirmed = t.Column<bool>("boolean", nullable: false),
            TwoFactorEnabled = t.Column<bool>("boolean", nullable: false),
            LockoutEnd = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
            LockoutEnabled = t.Column<bool>("boolean", nullable: false),
            AccessFailedCount = t.Column<int>("integer", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetUsers", x => x.Id);
            t.ForeignKey("FK_AspNetUsers_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("adapters", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            Name = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            BaseModelId = t.Column<Guid>("uuid", nullable: false),
            Rank = t.Column<int>("integer", nullable: false),
            Alpha = t.Column<double>("double precision", nullable: false),
            TargetModules = t.Column<string>("character varying(500)", maxLength: 500, nullable: false),
            BlobSha256 = t.Column<string>("character varying(64)", maxLength: 64, nullable: false),
            SizeBytes = t.Column<long>("bigint", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_adapters", x => x.Id);
            t.ForeignKey("FK_adapters_base_models_BaseModelId", x => x.BaseModelId, "base_models", "Id", onDelete: ReferentialAction.Restrict);
            t.ForeignKey("FK_adapters_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("api_keys", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            Name = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            Prefix = t.Column<string>("character varying(32)", maxLength: 32, nullable: false),
            SecretHash = t.Column<byte[]>("bytea", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
            LastUsedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
            RevokedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: true),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_api_keys", x => x.Id);
            t.ForeignKey("FK_api_keys_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("files", t => new
        {
            Id = t.Column<Guid>("uuid", nullable: false),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            FileName = t.Column<string>("character varying(500)", maxLength: 500, nullable: false),
            Purpose = t.Column<string>("character varying(50)", maxLength: 50, nullable: false),
            Bytes = t.Column<long>("bigint", nullable: false),
            BlobSha256 = t.Column<string>("character varying(64)", maxLength: 64, nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_files", x => x.Id);
            t.ForeignKey("FK_files_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("usage_records", t => new
        {
            Id = t.Column<long>("bigint", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            TenantId = t.Column<Guid>("uuid", nullable: false),
            ApiKeyId = t.Column<Guid>("uuid", nullable: true),
            Model = t.Column<string>("character varying(200)", maxLength: 200, nullable: false),
            AdapterId = t.Column<Guid>("uuid", nullable: true),
            PromptTokens = t.Column<int>("integer", nullable: false),
            CompletionTokens = t.Column<int>("integer", nullable: false),
            LatencyMs = t.Column<int>("integer", nullable: false),
            CreatedAt = t.Column<DateTimeOffset>("timestamp with time zone", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_usage_records", x => x.Id);
            t.ForeignKey("FK_usage_records_tenants_TenantId", x => x.TenantId, "tenants", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("AspNetUserClaims", t => new
        {
            Id = t.Column<int>("integer", nullable: false)
                .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
            UserId = t.Column<Guid>("uuid", nullable: false),
            ClaimType = t.Column<string>("text", nullable: true),
            ClaimValue = t.Column<string>("text", nullable: true),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetUserClaims", x => x.Id);
            t.ForeignKey("FK_AspNetUserClaims_AspNetUsers_UserId", x => x.UserId, "AspNetUsers", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("AspNetUserLogins", t => new
        {
            LoginProvider = t.Column<string>("text", nullable: false),
            ProviderKey = t.Column<string>("text", nullable: false),
            ProviderDisplayName = t.Column<string>("text", nullable: true),
            UserId = t.Column<Guid>("uuid", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetUserLogins", x => new { x.LoginProvider, x.ProviderKey });
            t.ForeignKey("FK_AspNetUserLogins_AspNetUsers_UserId", x => x.UserId, "AspNetUsers", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("AspNetUserRoles", t => new
        {
            UserId = t.Column<Guid>("uuid", nullable: false),
            RoleId = t.Column<Guid>("uuid", nullable: false),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetUserRoles", x => new { x.UserId, x.RoleId });
            t.ForeignKey("FK_AspNetUserRoles_AspNetRoles_RoleId", x => x.RoleId, "AspNetRoles", "Id", onDelete: ReferentialAction.Cascade);
            t.ForeignKey("FK_AspNetUserRoles_AspNetUsers_UserId", x => x.UserId, "AspNetUsers", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateTable("AspNetUserTokens", t => new
        {
            UserId = t.Column<Guid>("uuid", nullable: false),
            LoginProvider = t.Column<string>("text", nullable: false),
            Name = t.Column<string>("text", nullable: false),
            Value = t.Column<string>("text", nullable: true),
        }, constraints: t =>
        {
            t.PrimaryKey("PK_AspNetUserTokens", x => new { x.UserId, x.LoginProvider, x.Name });
            t.ForeignKey("FK_AspNetUserTokens_AspNetUsers_UserId", x => x.UserId, "AspNetUsers", "Id", onDelete: ReferentialAction.Cascade);
        });

        m.CreateIndex("IX_AspNetRoleClaims_RoleId", "AspNetRoleClaims", "RoleId");
        m.CreateIndex("RoleNameIndex", "AspNetRoles", "NormalizedName", unique: true);
        m.CreateIndex("IX_AspNetUserClaims_UserId", "AspNetUserClaims", "UserId");
        m.CreateIndex("IX_AspNetUserLogins_UserId", "AspNetUserLogins", "UserId");
        m.CreateIndex("IX_AspNetUserRoles_RoleId", "AspNetUserRoles", "RoleId");
        m.CreateIndex("EmailIndex", "AspNetUsers", "NormalizedEmail");
        m.CreateIndex("IX_AspNetUsers_TenantId", "AspNetUsers", "TenantId");
        m.CreateIndex("UserNameIndex", "AspNetUsers", "NormalizedUserName", unique: true);
        m.CreateIndex("IX_adapters_BaseModelId", "adapters", "BaseModelId");
        m.CreateIndex("IX_adapters_TenantId_Name", "adapters", ["TenantId", "Name"], unique: true);
        m.CreateIndex("IX_api_keys_SecretHash", "api_keys", "SecretHash", unique: true);
        m.CreateIndex("IX_api_keys_TenantId", "api_keys", "TenantId");
        m.CreateIndex("IX_base_models_Name", "base_models", "Name", unique: true);
        m.CreateIndex("IX_files_TenantId", "files", "TenantId");
        m.CreateIndex("IX_tenants_Name", "tenants", "Name", unique: true);
        m.CreateIndex("IX_usage_records_TenantId_CreatedAt", "usage_records", ["TenantId", "CreatedAt"]);
    }

    protected override void Down(MigrationBuilder m)
    {
        foreach (var table in new[]
                 {
                     "AspNetRoleClaims", "AspNetUserClaims", "AspNetUserLogins", "AspNetUserRoles", "AspNetUserTokens",
                     "adapters", "api_keys", "files", "usage_records", "AspNetRoles", "AspNetUsers", "base_models", "tenants",
                 })
            m.DropTable(table);
    }
}
