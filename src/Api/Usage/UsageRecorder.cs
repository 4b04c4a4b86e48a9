using System.Threading.Channels;
using Loom.Data;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Usage;

/// <summary>
/// Writes usage rows. A write that fails (database unreachable, a lock, a restart) is queued in memory and retried
/// with backoff until it lands; each row carries its request id and is inserted with ON CONFLICT DO NOTHING, so a
/// retry of a write that had in fact committed inserts nothing. The queue holds at most <see cref="MaxPending"/>
/// rows (the oldest are dropped past that, with an error); a row is given up after <see cref="GiveUpAfter"/>, since
/// the daily roll-up no longer recomputes its day by then.
/// </summary>
public sealed class UsageRecorder(IServiceScopeFactory scopes, ILogger<UsageRecorder> logger) : BackgroundService
{
    public const int MaxPending = 100_000;
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromDays(6);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(30);

    private readonly Channel<UsageRecord> _pending = Channel.CreateBounded<UsageRecord>(new BoundedChannelOptions(MaxPending)
    {
        SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest,
    }, dropped => logger.LogError("Usage queue full: dropped the usage of request {Request} (tenant {Tenant}, {Tokens} tokens)",
        dropped.RequestId, dropped.TenantId, dropped.PromptTokens + dropped.CompletionTokens));

    /// <summary>Rows waiting for a retry.</summary>
    public int Pending => _pending.Reader.Count;

    /// <summary>Writes the row now, or queues it for retries if that fails. Never throws.</summary>
    public async Task RecordAsync(UsageRecord record)
    {
        if (record.RequestId == Guid.Empty) record.RequestId = Guid.NewGuid();
        try
        {
            await WriteAsync(record, CancellationToken.None);
        }
        catch (Exception e)
        {
            logger.LogWarning("Could not record usage of request {Request} ({Message}); will retry", record.RequestId, e.Message);
            _pending.Writer.TryWrite(record);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        try
        {
            while (await _pending.Reader.WaitToReadAsync(stoppingToken))
            {
                while (_pending.Reader.TryPeek(out var record))
                {
                    if (DateTimeOffset.UtcNow - record.CreatedAt > GiveUpAfter)
                    {
                        _pending.Reader.TryRead(out _);
                        logger.LogError("Gave up recording usage of request {Request} (tenant {Tenant}, {Prompt}+{Completion} tokens at {At})",
                            record.RequestId, record.TenantId, record.PromptTokens, record.CompletionTokens, record.CreatedAt);
                        continue;
                    }
                    try
                    {
                        await WriteAsync(record, stoppingToken);
                        _pending.Reader.TryRead(out _);
                        delay = TimeSpan.FromMilliseconds(200);
                    }
                    catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                    {
                        logger.LogWarning("Retrying usage writes in {Delay} ms ({Pending} waiting): {Message}", delay.TotalMilliseconds, Pending, e.Message);
                        await Task.Delay(delay, stoppingToken);
                        delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxDelay.Ticks));
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        if (Pending > 0) logger.LogError("Stopping with {Pending} usage rows not written", Pending);
    }

    private async Task WriteAsync(UsageRecord r, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO usage_records ("RequestId", "TenantId", "ApiKeyId", "Model", "AdapterId", "PromptTokens", "CompletionTokens", "LatencyMs", "CreatedAt")
            VALUES ({r.RequestId}, {r.TenantId}, {r.ApiKeyId}, {r.Model}, {r.AdapterId}, {r.PromptTokens}, {r.CompletionTokens}, {r.LatencyMs}, {r.CreatedAt})
            ON CONFLICT ("RequestId") DO NOTHING
            """, ct);
    }
}
