using Loom.Api.Auth;
using Loom.Data.Entities;
using System.Globalization;
using System.Text.Json.Serialization;
using Loom.Api.Errors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

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

    private static async Task<IResult> GetUsage(string? start, string? end, UsageService usage, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (!TryParseInstant(end, now, out var to)) return ApiErrors.BadRequest("'end' must be Unix seconds or a date (YYYY-MM-DD).", "end");
        if (!TryParseInstant(start, to.AddDays(-30), out var from)) return ApiErrors.BadRequest("'start' must be Unix seconds or a date (YYYY-MM-DD).", "start");
        if (from >= to) return ApiErrors.BadRequest("'start' must be before 'end'.", "start");
        if (to - from > UsageService.MaxRange) return ApiErrors.BadRequest("The range may span at most 366 days.", "start");

        var data = await usage.GetAsync(from, to, ct);
        return Results.Json(new UsageResponse("usage", from.ToUnixTimeSeconds(), to.ToUnixTimeSeconds(), data));
    }

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
