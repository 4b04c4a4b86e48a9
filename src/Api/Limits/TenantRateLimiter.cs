using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Loom.Data.Keys;
using Microsoft.Extensions.Options;

namespace Loom.Api.Limits;

/// <summary>Defaults for every tenant (section "Api:RateLimits"); a tenant row may override each.</summary>
public sealed class RateLimitOptions
{
    public int RequestsPerMinute { get; set; } = 600;
    public int TokensPerMinute { get; set; } = 200_000;
}

/// <summary>Outcome of a limit check: when refused, how long until it would pass and which limit refused.</summary>
public readonly record struct LimitDecision(bool Allowed, TimeSpan RetryAfter, string Kind);

/// <summary>
/// Per-tenant request and token limits on System.Threading.RateLimiting (the limiters behind ASP.NET
/// Core's rate-limiting middleware): a sliding one-minute window for requests, a token bucket refilled
/// every second for tokens. Limiters are partitioned by tenant and limit value, so a changed override
/// takes effect with a fresh limiter.
/// </summary>
public sealed class TenantRateLimiter(IOptionsMonitor<RateLimitOptions> options) : IDisposable
{
    private readonly ConcurrentDictionary<(Guid, int), SlidingWindowRateLimiter> _requests = new();
    private readonly ConcurrentDictionary<(Guid, int), TokenBucketRateLimiter> _tokens = new();

    public LimitDecision TryRequest(AuthenticatedKey key)
    {
        var limit = key.RequestsPerMinute ?? options.CurrentValue.RequestsPerMinute;
        var limiter = _requests.GetOrAdd((key.Key.TenantId, limit), k => new SlidingWindowRateLimiter(new()
        {
            PermitLimit = Math.Max(1, k.Item2), Window = TimeSpan.FromMinutes(1), SegmentsPerWindow = 12,
            QueueLimit = 0, AutoReplenishment = true,
        }));
        return Decide(limiter.AttemptAcquire(), "requests", TimeSpan.FromSeconds(5));
    }

    /// <summary>Takes <paramref name="tokens"/> from the tenant's per-minute token budget.</summary>
    public LimitDecision TryTokens(AuthenticatedKey key, int tokens)
    {
        var limit = Math.Max(1, key.TokensPerMinute ?? options.CurrentValue.TokensPerMinute);
        var limiter = _tokens.GetOrAdd((key.Key.TenantId, limit), k => new TokenBucketRateLimiter(new()
        {
            TokenLimit = k.Item2, TokensPerPeriod = Math.Max(1, k.Item2 / 60), ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0, AutoReplenishment = true,
        }));
        // A request larger than the whole budget could never pass: refuse it with a full minute's wait.
        if (tokens > limit) return new LimitDecision(false, TimeSpan.FromMinutes(1), "tokens");
        return Decide(limiter.AttemptAcquire(Math.Max(0, tokens)), "tokens", TimeSpan.FromSeconds(1));
    }

    private static LimitDecision Decide(RateLimitLease lease, string kind, TimeSpan fallback)
    {
        using (lease)
        {
            if (lease.IsAcquired) return new LimitDecision(true, TimeSpan.Zero, kind);
            var retry = lease.TryGetMetadata(MetadataName.RetryAfter, out var r) ? r : fallback;
            return new LimitDecision(false, retry < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : retry, kind);
        }
    }

    public void Dispose()
    {
        foreach (var l in _requests.Values) l.Dispose();
        foreach (var l in _tokens.Values) l.Dispose();
    }
}
