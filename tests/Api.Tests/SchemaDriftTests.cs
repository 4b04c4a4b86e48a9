using Loom.Data;
using Loom.Data.Tenancy;
using Loom.Tests.Shared;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Loom.Api.Tests;

/// <summary>
/// The hand-written migrations must build exactly the schema EF would create from the model:
/// one database from the migrations, one from EnsureCreated, compared through information_schema.
/// </summary>
public class SchemaDriftTests
{
    [Fact]
    public async Task MigrationsMatchTheModel()
    {
        await using var migrated = await TestDatabase.CreateAsync("loom_drift_m");
        await using var created = await TestDatabase.CreateAsync("loom_drift_c");
        await using (var db = Context(migrated.ConnectionString)) await db.Database.MigrateAsync();
        await using (var db = Context(created.ConnectionString)) Assert.True(await db.Database.EnsureCreatedAsync());

        var fromMigrations = await DescribeAsync(migrated.ConnectionString);
        var fromModel = await DescribeAsync(created.ConnectionString);
        Assert.NotEmpty(fromModel);
        var missing = fromModel.Except(fromMigrations).ToList();
        var extra = fromMigrations.Except(fromModel).ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"schema drift.\nIn the model but not the migrations:\n  {string.Join("\n  ", missing)}\nIn the migrations but not the model:\n  {string.Join("\n  ", extra)}");
    }

    [Fact]
    public async Task MigratingTwiceIsANoOp()
    {
        await using var database = await TestDatabase.CreateAsync("loom_drift_twice");
        await using var db = Context(database.ConnectionString);
        await db.Database.MigrateAsync();
        await db.Database.MigrateAsync();
        Assert.Empty(await db.Database.GetPendingMigrationsAsync());
    }

    private static PlatformDbContext Context(string connectionString)
    {
        var options = new DbContextOptionsBuilder<PlatformDbContext>();
        DataModule.Configure(options, connectionString);
        return new PlatformDbContext(options.Options, new TenantContext());
    }

    private static async Task<SortedSet<string>> DescribeAsync(string connectionString)
    {
        var rows = new SortedSet<string>(StringComparer.Ordinal);
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        async Task Read(string sql)
        {
            await using var cmd = new NpgsqlCommand(sql, conn);
            await using var r = await cmd.ExecuteReaderAsync();
            while (await r.ReadAsync())
                rows.Add(string.Join(" | ", Enumerable.Range(0, r.FieldCount).Select(i => r.IsDBNull(i) ? "null" : r.GetValue(i).ToString())));
        }
        await Read("""
            SELECT 'column', table_name, column_name, data_type, character_maximum_length, is_nullable, column_default, is_identity, identity_generation
            FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '__ef_migrations_history'
            """);
        await Read("""
            SELECT 'constraint', tc.table_name, tc.constraint_name, tc.constraint_type,
                   string_agg(kcu.column_name, ',' ORDER BY kcu.ordinal_position), rc.delete_rule
            FROM information_schema.table_constraints tc
            LEFT JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
            LEFT JOIN information_schema.referential_constraints rc ON rc.constraint_name = tc.constraint_name AND rc.constraint_schema = tc.table_schema
            WHERE tc.table_schema = 'public' AND tc.table_name <> '__ef_migrations_history' AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')
            GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type, rc.delete_rule
            """);
        await Read("SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> '__ef_migrations_history'");
        return rows;
    }
}
