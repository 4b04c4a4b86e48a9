using System.Globalization;
using Loom.Data;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Usage;

/// <summary>The current tenant's completions summed per UTC day and model (tenant query filter), for /v1/usage and the portal.</summary>
public sealed class UsageService(PlatformDbContext db)
{
    /// <summary>The longest range one query may span.</summary>
    public static readonly TimeSpan MaxRange = TimeSpan.FromDays(366);

    /// <summary>Buckets of [from, to), ordered by day then model.</summary>
    public async Task<List<UsageBucket>> GetAsync(DateTimeOffset from, DateTimeOffset to, CancellationToken ct)
    {
        // Whole days before the roll-up's watermark come from usage_daily; the open day(s) and partial days at the
        // edges of the range from the raw rows. The tenant query filter scopes both.
        var rolledUpTo = await db.UsageRollupState.AsNoTracking().Where(s => s.Id == 1).Select(s => (DateOnly?)s.RolledUpTo).SingleOrDefaultAsync(ct);
        var firstWhole = DateOnly.FromDateTime(from.UtcDateTime);
        if (from.UtcDateTime.TimeOfDay != TimeSpan.Zero) firstWhole = firstWhole.AddDays(1);
        var endWhole = DateOnly.FromDateTime(to.UtcDateTime); // days before this one end inside the range
        if (rolledUpTo is { } w && w < endWhole) endWhole = w;
        if (rolledUpTo is null || endWhole < firstWhole) endWhole = firstWhole; // nothing from the roll-up
        var rolledStart = Midnight(firstWhole);
        var rolledEnd = Midnight(endWhole);

        var rolled = await db.UsageDaily.AsNoTracking()
            .Where(u => u.Day >= firstWhole && u.Day < endWhole)
            .Select(u => new { u.Day, u.Model, u.Requests, Prompt = u.PromptTokens, Completion = u.CompletionTokens })
            .ToListAsync(ct);
        var raw = await db.UsageRecords.AsNoTracking()
            .Where(u => u.CreatedAt >= from && u.CreatedAt < to && (u.CreatedAt < rolledStart || u.CreatedAt >= rolledEnd))
            .GroupBy(u => new { u.CreatedAt.Year, u.CreatedAt.Month, u.CreatedAt.Day, u.Model })
            .Select(g => new { Day = new DateOnly(g.Key.Year, g.Key.Month, g.Key.Day), g.Key.Model, Requests = g.Count(), Prompt = g.Sum(u => (long)u.PromptTokens), Completion = g.Sum(u => (long)u.CompletionTokens) })
            .ToListAsync(ct);
        return rolled.Concat(raw)
            .GroupBy(r => (r.Day, r.Model))
            .Select(g => (g.Key.Day, g.Key.Model, Requests: g.Sum(r => r.Requests), Prompt: g.Sum(r => r.Prompt), Completion: g.Sum(r => r.Completion)))
            .OrderBy(r => r.Day).ThenBy(r => r.Model, StringComparer.Ordinal)
            .Select(r => new UsageBucket(r.Day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), r.Model, r.Requests, r.Prompt, r.Completion, r.Prompt + r.Completion))
            .ToList();
    }

    private static DateTimeOffset Midnight(DateOnly day) => new(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
}
