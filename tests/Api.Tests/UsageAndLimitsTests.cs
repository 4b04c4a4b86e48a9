using System.Net;
using System.Text.Json;
using Loom.Data.Entities;

namespace Loom.Api.Tests;

public sealed class TightLimitsLoomFactory : LoomFactory
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings => [new("Api:RateLimits:RequestsPerMinute", "5")];
}

public class UsageAndLimitsTests(TightLimitsLoomFactory factory) : IClassFixture<TightLimitsLoomFactory>
{
    [Fact]
    public async Task UsageIsSummedPerDayAndModelForTheCallerOnly()
    {
        var a = await factory.CreateTenantAsync($"usage-a-{Guid.NewGuid():N}");
        var b = await factory.CreateTenantAsync($"usage-b-{Guid.NewGuid():N}");
        var day1 = new DateTimeOffset(2026, 11, 20, 10, 0, 0, TimeSpan.Zero);
        var day2 = new DateTimeOffset(2026, 11, 21, 23, 59, 0, TimeSpan.Zero);
        await factory.InTenantAsync(a.Id, async db =>
        {
            db.UsageRecords.AddRange(
                new UsageRecord { TenantId = a.Id, Model = "loom-demo", PromptTokens = 10, CompletionTokens = 5, LatencyMs = 1, CreatedAt = day1 },
                new UsageRecord { TenantId = a.Id, Model = "loom-demo", PromptTokens = 1, CompletionTokens = 2, LatencyMs = 1, CreatedAt = day1.AddHours(3) },
                new UsageRecord { TenantId = a.Id, Model = "my-adapter", PromptTokens = 7, CompletionTokens = 0, LatencyMs = 1, CreatedAt = day1 },
                new UsageRecord { TenantId = a.Id, Model = "loom-demo", PromptTokens = 100, CompletionTokens = 100, LatencyMs = 1, CreatedAt = day2 });
            return await db.SaveChangesAsync();
        });
        await factory.InTenantAsync(b.Id, async db =>
        {
            db.UsageRecords.Add(new UsageRecord { TenantId = b.Id, Model = "loom-demo", PromptTokens = 999, CompletionTokens = 999, LatencyMs = 1, CreatedAt = day1 });
            return await db.SaveChangesAsync();
        });

        var client = factory.ClientWithKey((await factory.CreateKeyAsync(a.Id)).Secret);
        var usage = JsonDocument.Parse(await client.GetStringAsync("/v1/usage?start=2026-11-20&end=2026-11-22")).RootElement;
        var rows = usage.GetProperty("data").EnumerateArray()
            .Select(r => $"{r.GetProperty("date").GetString()} {r.GetProperty("model").GetString()} {r.GetProperty("requests").GetInt32()} {r.GetProperty("prompt_tokens").GetInt64()} {r.GetProperty("completion_tokens").GetInt64()} {r.GetProperty("total_tokens").GetInt64()}")
            .ToList();
        Assert.Equal(["2026-11-20 loom-demo 2 11 7 18", "2026-11-20 my-adapter 1 7 0 7", "2026-11-21 loom-demo 1 100 100 200"], rows);

        // The range is half-open and takes Unix seconds too.
        var firstDay = JsonDocument.Parse(await client.GetStringAsync($"/v1/usage?start={day1.AddHours(-10).ToUnixTimeSeconds()}&end={day1.AddHours(14).ToUnixTimeSeconds()}")).RootElement;
        Assert.Equal(2, firstDay.GetProperty("data").GetArrayLength());
    }

    [Theory]
    [InlineData("start=yesterday", "start")]
    [InlineData("end=2026-13-01", "end")]
    [InlineData("start=2026-11-22&end=2026-11-20", "start")]
    [InlineData("start=2020-01-01&end=2026-01-01", "start")]
    public async Task BadRangesAre400(string query, string param)
    {
        var tenant = await factory.CreateTenantAsync($"usage-bad-{Guid.NewGuid():N}");
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync($"/v1/usage?{query}"), HttpStatusCode.BadRequest, param: param);
    }

    [Fact]
    public async Task RequestsOverTheLimitGet429WithRetryAfterAndOtherTenantsAreUnaffected()
    {
        var noisy = await factory.CreateTenantAsync($"noisy-{Guid.NewGuid():N}");
        var quiet = await factory.CreateTenantAsync($"quiet-{Guid.NewGuid():N}");
        var noisyClient = factory.ClientWithKey((await factory.CreateKeyAsync(noisy.Id)).Secret);
        var quietClient = factory.ClientWithKey((await factory.CreateKeyAsync(quiet.Id)).Secret);

        for (var i = 0; i < 5; i++) Assert.Equal(HttpStatusCode.OK, (await noisyClient.GetAsync("/v1/models")).StatusCode);
        var refused = await noisyClient.GetAsync("/v1/models");
        await ErrorAssert.IsEnvelopeAsync(refused, HttpStatusCode.TooManyRequests, "rate_limit_exceeded");
        Assert.True(refused.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After missing");

        Assert.Equal(HttpStatusCode.OK, (await quietClient.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task PerTenantOverrideFromTheDatabaseApplies()
    {
        var vip = await factory.CreateTenantAsync($"vip-{Guid.NewGuid():N}");
        await factory.InTenantAsync(null, async db =>
        {
            (await db.Tenants.FindAsync(vip.Id))!.RequestsPerMinute = 8;
            return await db.SaveChangesAsync();
        });
        var client = factory.ClientWithKey((await factory.CreateKeyAsync(vip.Id)).Secret);
        for (var i = 0; i < 8; i++) Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
        await ErrorAssert.IsEnvelopeAsync(await client.GetAsync("/v1/models"), HttpStatusCode.TooManyRequests, "rate_limit_exceeded");
    }
}
