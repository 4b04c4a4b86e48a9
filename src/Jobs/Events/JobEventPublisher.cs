using System.Data.Common;
using System.Text;
using System.Text.Json;
using Loom.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Loom.Jobs.Events;

/// <summary>Appends job events and tells every web node about them.</summary>
public interface IJobEventPublisher
{
    /// <summary>Appends an event in its own transaction and notifies listeners when it commits.</summary>
    Task<JobEventMessage> PublishAsync(Guid tenantId, string jobId, string kind, object? payload, CancellationToken ct = default);

    /// <summary>Appends an event on <paramref name="db"/>'s connection, inside its current transaction if it has one
    /// (the event then commits, and is announced, with the caller's other writes), else in a transaction of its own.</summary>
    Task<JobEventMessage> PublishAsync(PlatformDbContext db, Guid tenantId, string jobId, string kind, object? payload, CancellationToken ct = default);
}

/// <summary>
/// Inserts the event with the job's next sequence number and sends <c>NOTIFY</c> in the same transaction. A
/// transaction-scoped advisory lock per (tenant, job) makes sequence numbers gap-free and commit in order, so a
/// client that has seen n and asks for the events after n misses nothing. NOTIFY is delivered only on commit.
/// </summary>
public sealed class JobEventPublisher(IServiceScopeFactory scopes, TimeProvider clock) : IJobEventPublisher
{
    public const string Channel = "loom_job_events";
    public const int MaxJobIdLength = 100;
    public const int MaxKindLength = 50;
    /// <summary>Largest payload (UTF-8 JSON) an event may carry.</summary>
    public const int MaxPayloadBytes = 64 * 1024;
    /// <summary>PostgreSQL's NOTIFY payload limit is 8000 bytes; larger events are announced by key only.</summary>
    private const int MaxNotificationBytes = 7900;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<JobEventMessage> PublishAsync(Guid tenantId, string jobId, string kind, object? payload, CancellationToken ct = default)
    {
        // A context of its own; only its connection is used.
        await using var scope = scopes.CreateAsyncScope();
        return await PublishAsync(scope.ServiceProvider.GetRequiredService<PlatformDbContext>(), tenantId, jobId, kind, payload, ct);
    }

    public async Task<JobEventMessage> PublishAsync(PlatformDbContext db, Guid tenantId, string jobId, string kind, object? payload, CancellationToken ct = default)
    {
        var json = Validate(jobId, kind, payload);
        var own = db.Database.CurrentTransaction is null ? await db.Database.BeginTransactionAsync(ct) : null;
        try
        {
            var tx = db.Database.CurrentTransaction!.GetDbTransaction();
            var conn = db.Database.GetDbConnection();
            var now = clock.GetUtcNow();
            long seq;
            await using (var lockCmd = Command(conn, tx, "SELECT pg_advisory_xact_lock(hashtextextended(@tenant::text || '/' || @job, 0))", ("tenant", tenantId), ("job", jobId)))
                await lockCmd.ExecuteNonQueryAsync(ct);
            await using (var cmd = Command(conn, tx, """
                INSERT INTO job_events ("TenantId", "JobId", "Seq", "CreatedAt", "Kind", "Payload")
                VALUES (@tenant, @job, (SELECT COALESCE(MAX("Seq"), 0) + 1 FROM job_events WHERE "TenantId" = @tenant AND "JobId" = @job),
                        @now, @kind, @payload::jsonb)
                RETURNING "Seq";
                """, ("tenant", tenantId), ("job", jobId), ("now", now), ("kind", kind), ("payload", json)))
                seq = (long)(await cmd.ExecuteScalarAsync(ct))!;

            using var doc = JsonDocument.Parse(json);
            var message = new JobEventMessage(jobId, seq, now, kind, doc.RootElement.Clone());
            var notification = JsonSerializer.Serialize(new JobEventNotification(tenantId, jobId, seq, message), Json);
            if (Encoding.UTF8.GetByteCount(notification) > MaxNotificationBytes)
                notification = JsonSerializer.Serialize(new JobEventNotification(tenantId, jobId, seq, null), Json);
            await using (var notify = Command(conn, tx, "SELECT pg_notify(@channel, @message)", ("channel", Channel), ("message", notification)))
                await notify.ExecuteNonQueryAsync(ct);

            if (own is not null) await own.CommitAsync(ct);
            return message;
        }
        finally
        {
            if (own is not null) await own.DisposeAsync();
        }
    }

    private static string Validate(string jobId, string kind, object? payload)
    {
        if (string.IsNullOrEmpty(jobId) || jobId.Length > MaxJobIdLength) throw new ArgumentException($"A job id is 1 to {MaxJobIdLength} characters.", nameof(jobId));
        if (string.IsNullOrEmpty(kind) || kind.Length > MaxKindLength) throw new ArgumentException($"An event kind is 1 to {MaxKindLength} characters.", nameof(kind));
        var json = payload switch
        {
            null => "{}",
            JsonElement e => e.GetRawText(),
            _ => JsonSerializer.Serialize(payload, payload.GetType(), Json),
        };
        if (!json.StartsWith('{')) throw new ArgumentException("An event payload is a JSON object.", nameof(payload));
        if (Encoding.UTF8.GetByteCount(json) > MaxPayloadBytes) throw new ArgumentException($"An event payload is at most {MaxPayloadBytes} bytes.", nameof(payload));
        return json;
    }

    private static DbCommand Command(DbConnection conn, DbTransaction tx, string sql, params (string Name, object Value)[] parameters)
    {
        var cmd = conn.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) cmd.Parameters.Add(new NpgsqlParameter(name, value));
        return cmd;
    }
}
