using Loom.Api.Auth;
using Loom.Data.Entities;
using System.Globalization;
using System.Text.Json.Serialization;
using Loom.Api.Errors;
using Loom.Data;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Usage;

/// <summary>One day's usage of one model (UTC days).</summary>
public sealed record UsageBucket(
    [property: JsonPropertyName("date")] string Date,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("requests")] int Requests,
    [property: JsonPropertyName("prompt_tokens")] long PromptTokens,
    [property: JsonPropertyName("completion_tokens")] long CompletionTokens,
    [property: JsonPropertyName("total_tokens")] long TotalTokens);

public sealed record UsageResponse(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("start")] long Start,
    [property: JsonPropertyName("end")] long End,
    [property: JsonPropertyName("data")] IReadOnlyList<UsageBucket> Data);

/// <summary>
/// GET /v1/usage?start=&amp;end= : the caller's completions summed per UTC day and model, from the daily roll-up
/// (the usage roll-up job) for whole days it covers and from the raw rows for the rest.
/// start and end are Unix seconds or ISO dates (YYYY-MM-DD); the range is [start, end).
/// Defaults: the last 30 days up to now. At most 366 days per request.
/// </summary>
public static class UsageApi
{
    public static RouteGroupBuilder MapUsage(this RouteGroupBuilder v1)
    {
        v1.MapGet("/usage", GetUsage).WithName("GetUsage").RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> GetUsage(string? start, string? end, PlatformDbContext db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (!TryParseInstant(end, now, out var to)) return ApiErrors.BadRequest("'end' must be Unix seconds or a date (YYYY-MM-DD).", "end");
        if (!TryParseInstant(start, to.AddDays(-30), out var from)) return ApiErrors.BadRequest("'start' must be Unix seconds or a date (YYYY-MM-DD).", "start");
        if (from >= to) return ApiErrors.BadRequest("'start' must be before 'end'.", "start");
        if (to - from > TimeSpan.FromDays(366)) return ApiErrors.BadRequest("The range may span at most 366 days.", "start");

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
        var data = rolled.Concat(raw)
            .GroupBy(r => (r.Day, r.Model))
            .Select(g => (g.Key.Day, g.Key.Model, Requests: g.Sum(r => r.Requests), Prompt: g.Sum(r => r.Prompt), Completion: g.Sum(r => r.Completion)))
            .OrderBy(r => r.Day).ThenBy(r => r.Model, StringComparer.Ordinal)
            .Select(r => new UsageBucket(r.Day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), r.Model, r.Requests, r.Prompt, r.Completion, r.Prompt + r.Completion))
            .ToList();
        return Results.Json(new UsageResponse("usage", from.ToUnixTimeSeconds(), to.ToUnixTimeSeconds(), data));
    }

    private static DateTimeOffset Midnight(DateOnly day) => new(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);

    private static bool TryParseInstant(string? s, DateTimeOffset fallback, out DateTimeOffset value)
    {
        value = fallback;
        if (string.IsNullOrWhiteSpace(s)) return true;
        if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds < 253402300800)
        {
            value = DateTimeOffset.FromUnixTimeSeconds(seconds);
            return true;
        }
        if (DateOnly.TryParseExact(s, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
        {
            value = new DateTimeOffset(date.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            return true;
        }
        return false;
    }
}
