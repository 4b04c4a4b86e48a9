using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Loom.Data.Keys;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RedisRateLimiting;
using StackExchange.Redis;

namespace Loom.Api.Limits;

/// <summary>Defaults for every tenant (section "Api:RateLimits"); a tenant row may override each.</summary>
public sealed class RateLimitOptions
{
    public int RequestsPerMinute { get; set; } = 600;
    public int TokensPerMinute { get; set; } = 200_000;
    /// <summary>A Redis connection string (StackExchange.Redis form, e.g. "127.0.0.1:6379"). When set, the limits hold
    /// across every API node sharing that Redis; when empty, each process keeps its own.</summary>
    public string? Redis { get; set; }
}

/// <summary>Outcome of a limit check: when refused, how long until it would pass and which limit refused.</summary>
public readonly record struct LimitDecision(bool Allowed, TimeSpan RetryAfter, string Kind);

/// <summary>
/// Per-tenant request and token limits on System.Threading.RateLimiting (the limiters behind ASP.NET
/// Core's rate-limiting middleware): a sliding one-minute window for requests, a token bucket refilled
/// every second for tokens. In one process by default; with <see cref="RateLimitOptions.Redis"/> set, the same two
/// limiters kept in Redis (RedisRateLimiting), so a tenant's limit holds across API nodes rather than once per node.
/// Limiters are partitioned by tenant and limit value, so a changed override takes effect with a fresh limiter.
/// </summary>
public sealed class TenantRateLimiter : IDisposable
{
    private readonly IOptionsMonitor<RateLimitOptions> _options;
    private readonly ConcurrentDictionary<(Guid, int), RateLimiter> _requests = new();
    private readonly ConcurrentDictionary<(Guid, int), RateLimiter> _tokens = new();
    private readonly Lazy<IConnectionMultiplexer>? _redis;

    public TenantRateLimiter(IOptionsMonitor<RateLimitOptions> options, ILogger<TenantRateLimiter> logger)
    {
        _options = options;
        if (options.CurrentValue.Redis is { Length: > 0 } redis)
        {
            logger.LogInformation("Tenant rate limits are kept in Redis at {Endpoint}: they hold across API nodes", RedisEndpoint(redis));
            var config = ConfigurationOptions.Parse(redis);
            config.AbortOnConnectFail = false; // keep reconnecting in the background; checks fail (503) meanwhile
            _redis = new(() => ConnectionMultiplexer.Connect(config));
        }
    }

    /// <summary>Whether the limits are shared through Redis.</summary>
    public bool ClusterWide => _redis is not null;

    public async ValueTask<LimitDecision> TryRequestAsync(AuthenticatedKey key, CancellationToken ct = default)
    {
        var limit = Math.Max(1, key.RequestsPerMinute ?? _options.CurrentValue.RequestsPerMinute);
        var limiter = _requests.GetOrAdd((key.Key.TenantId, limit), k => _redis is { } redis
            ? new RedisSlidingWindowRateLimiter<string>($"loom:rpm:{k.Item1:N}:{k.Item2}", new()
            {
                ConnectionMultiplexerFactory = () => redis.Value, PermitLimit = k.Item2, Window = TimeSpan.FromMinutes(1),
            })
            : new SlidingWindowRateLimiter(new()
            {
                PermitLimit = k.Item2, Window = TimeSpan.FromMinutes(1), SegmentsPerWindow = 12,
                QueueLimit = 0, AutoReplenishment = true,
            }));
        try
        {
            return Decide(await limiter.AcquireAsync(1, ct), "requests", TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return Unavailable;
        }
    }

    /// <summary>Takes <paramref name="tokens"/> from the tenant's per-minute token budget. Synchronous for the
    /// completion pipeline's preparation; with Redis that is one round trip to it.</summary>
    public LimitDecision TryTokens(AuthenticatedKey key, int tokens)
    {
        var limit = Math.Max(1, key.TokensPerMinute ?? _options.CurrentValue.TokensPerMinute);
        var limiter = _tokens.GetOrAdd((key.Key.TenantId, limit), k => _redis is { } redis
            ? new RedisTokenBucketRateLimiter<string>($"loom:tpm:{k.Item1:N}:{k.Item2}", new()
            {
                ConnectionMultiplexerFactory = () => redis.Value, TokenLimit = k.Item2, TokensPerPeriod = Math.Max(1, k.Item2 / 60),
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            })
            : new TokenBucketRateLimiter(new()
            {
                TokenLimit = k.Item2, TokensPerPeriod = Math.Max(1, k.Item2 / 60), ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                QueueLimit = 0, AutoReplenishment = true,
            }));
        // A request larger than the whole budget could never pass: refuse it with a full minute's wait.
        if (tokens > limit) return new LimitDecision(false, TimeSpan.FromMinutes(1), "tokens");
        if (_redis is null) return Decide(limiter.AttemptAcquire(Math.Max(0, tokens)), "tokens", TimeSpan.FromSeconds(1));
        try
        {
            // Redis limiters only acquire asynchronously.
            return Decide(limiter.AcquireAsync(Math.Max(0, tokens)).AsTask().GetAwaiter().GetResult(), "tokens", TimeSpan.FromSeconds(1));
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return Unavailable;
        }
    }

    /// <summary>The shared limits cannot be checked (Redis unreachable): refused, retryable, never let through unchecked.</summary>
    public static readonly LimitDecision Unavailable = new(false, TimeSpan.FromSeconds(1), "unavailable");

    private static LimitDecision Decide(RateLimitLease lease, string kind, TimeSpan fallback)
    {
        using (lease)
        {
            if (lease.IsAcquired) return new LimitDecision(true, TimeSpan.Zero, kind);
            var retry = lease.TryGetMetadata(MetadataName.RetryAfter, out var r) ? r : fallback;
            return new LimitDecision(false, retry < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : retry, kind);
        }
    }

    /// <summary>The host and port of a Redis connection string, never its password.</summary>
    private static string RedisEndpoint(string connectionString) =>
        ConfigurationOptions.Parse(connectionString).EndPoints.FirstOrDefault()?.ToString() ?? "(no endpoint)";

    public void Dispose()
    {
        foreach (var l in _requests.Values) l.Dispose();
        foreach (var l in _tokens.Values) l.Dispose();
        if (_redis is { IsValueCreated: true }) _redis.Value.Dispose();
    }
}
