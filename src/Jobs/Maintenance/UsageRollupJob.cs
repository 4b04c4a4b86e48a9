using Hangfire;
using Loom.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.Maintenance;

/// <summary>
/// Sums raw usage rows into <c>usage_daily</c> per tenant, UTC day and model, for every closed day not yet rolled
/// up plus the last <see cref="JobsOptions.UsageRollupLookbackDays"/> (rows written late by a retried write), then
/// moves the watermark to today. Each run replaces the days it covers in one transaction under an advisory lock,
/// so running it twice, or twice at once, gives the same table.
/// </summary>
[DisableConcurrentExecution(timeoutInSeconds: 60)]
[AutomaticRetry(Attempts = 5)]
public sealed class UsageRollupJob(PlatformDbContext db, TimeProvider clock, IOptions<JobsOptions> options, ILogger<UsageRollupJob> logger)
{
    /// <summary>Key of the advisory lock that serialises roll-up runs.</summary>
    private const long LockKey = 0x4c6f6f6d_55736167; // "LoomUsag"

    public async Task<int> RunAsync(CancellationToken ct)
    {
        var today = DateOnly.FromDateTime(clock.GetUtcNow().UtcDateTime);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock({LockKey})", ct);

        var state = await db.UsageRollupState.SingleOrDefaultAsync(s => s.Id == 1, ct);
        DateOnly from;
        if (state is null)
        {
            // First run: from the oldest raw row.
            var oldest = await db.UsageRecords.IgnoreQueryFilters().MinAsync(u => (DateTimeOffset?)u.CreatedAt, ct);
            from = oldest is { } o ? DateOnly.FromDateTime(o.UtcDateTime) : today;
        }
        else
        {
            var lookback = today.AddDays(-options.Value.UsageRollupLookbackDays);
            from = state.RolledUpTo < lookback ? state.RolledUpTo : lookback;
        }
        if (from > today) from = today;

        var start = new DateTimeOffset(from.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var end = new DateTimeOffset(today.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        await db.Database.ExecuteSqlAsync($"""DELETE FROM usage_daily WHERE "Day" >= {from} AND "Day" < {today}""", ct);
        var rows = await db.Database.ExecuteSqlAsync($"""
            INSERT INTO usage_daily ("TenantId", "Day", "Model", "Requests", "PromptTokens", "CompletionTokens")
            SELECT "TenantId", ("CreatedAt" AT TIME ZONE 'UTC')::date, "Model", count(*), sum("PromptTokens"), sum("CompletionTokens")
            FROM usage_records WHERE "CreatedAt" >= {start} AND "CreatedAt" < {end}
            GROUP BY 1, 2, 3
            """, ct);
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO usage_rollup_state ("Id", "RolledUpTo", "UpdatedAt") VALUES (1, {today}, {clock.GetUtcNow()})
            ON CONFLICT ("Id") DO UPDATE SET "RolledUpTo" = GREATEST(usage_rollup_state."RolledUpTo", excluded."RolledUpTo"), "UpdatedAt" = excluded."UpdatedAt"
            """, ct);
        await tx.CommitAsync(ct);
        logger.LogInformation("Usage roll-up: days {From} to {To} (exclusive), {Rows} rows", from, today, rows);
        return rows;
    }
}
