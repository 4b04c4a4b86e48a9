using System.Net;
using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>
/// A tenant's requests-per-minute limit across two API nodes on one database: with Redis configured
/// (Api:RateLimits:Redis) the nodes share one budget, so the tenant gets the limit, not twice it; the control pair
/// without Redis shows the per-process limits a plain node keeps. With Redis gone, checks fail closed with a
/// retryable 503.
/// </summary>
public class ClusterRateLimitTests
{
    private const int Limit = 6;

    /// <summary>An API node; on <paramref name="shared"/>'s database when given.</summary>
    private sealed class ApiNode(string? redis, TestDatabase? shared = null) : LoomFactory
    {
        protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        [
            new("Loom:Roles", "api"),
            new("Api:RateLimits:RequestsPerMinute", Limit.ToString()),
            new("Api:RateLimits:Redis", redis ?? ""),
        ];
        protected override Task<TestDatabase> DatabaseAsync() => shared is null ? base.DatabaseAsync() : Task.FromResult(shared);
        protected override bool OwnsDatabase => shared is null;
    }

    [Fact]
    public async Task ATenantsRequestLimitHoldsAcrossApiNodesSharingRedis()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var first = new ApiNode(redis.ConnectionString);
        await ((IAsyncLifetime)first).InitializeAsync();
        await using var second = new ApiNode(redis.ConnectionString, first.Database);
        await ((IAsyncLifetime)second).InitializeAsync();
        var (a, b) = await ClientsAsync(first, second);

        var statuses = await AlternateAsync(a, b, 2 * Limit);
        Assert.Equal(Limit, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(Limit, statuses.Count(s => s == HttpStatusCode.TooManyRequests));

        // Redis gone: refused with a retryable 503 in OpenAI's envelope, never let through unchecked.
        await redis.StopAsync();
        var (_, tenantB) = await ClientsAsync(first, second);
        var refused = await tenantB.GetAsync("/v1/models");
        await ErrorAssert.IsEnvelopeAsync(refused, HttpStatusCode.ServiceUnavailable, code: "rate_limiter_unavailable");
        Assert.True(refused.Headers.RetryAfter is not null, "no Retry-After on the 503");
    }

    [Fact]
    public async Task WithoutRedisEachNodeKeepsItsOwnBudget()
    {
        await using var first = new ApiNode(redis: null);
        await ((IAsyncLifetime)first).InitializeAsync();
        await using var second = new ApiNode(redis: null, first.Database);
        await ((IAsyncLifetime)second).InitializeAsync();
        var (a, b) = await ClientsAsync(first, second);
        var statuses = await AlternateAsync(a, b, 2 * Limit);
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.Equal(HttpStatusCode.TooManyRequests, (await a.GetAsync("/v1/models")).StatusCode);
    }

    /// <summary>A fresh tenant's key, as a client of each node.</summary>
    private static async Task<(HttpClient, HttpClient)> ClientsAsync(LoomFactory first, LoomFactory second)
    {
        var tenant = await first.CreateTenantAsync($"rl-{Guid.NewGuid():N}"[..12]);
        var secret = (await first.CreateKeyAsync(tenant.Id)).Secret;
        return (first.ClientWithKey(secret), second.ClientWithKey(secret));
    }

    private static async Task<List<HttpStatusCode>> AlternateAsync(HttpClient a, HttpClient b, int count)
    {
        var statuses = new List<HttpStatusCode>();
        for (int i = 0; i < count; i++) statuses.Add((await (i % 2 == 0 ? a : b).GetAsync("/v1/models")).StatusCode);
        return statuses;
    }
}
