using Loom.Api.Auth;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Jobs.Events;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.SignalR;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Realtime;

/// <summary>A page of a job's events after a sequence number.</summary>
public sealed record JobEventBatch(IReadOnlyList<JobEventMessage> Events, bool HasMore);

/// <summary>
/// Live job events for the caller's tenant, signed in with the portal cookie or an API key. A client subscribes to
/// a job with the last sequence number it has seen, gets what it missed, then every new event ("jobEvent"); after
/// a reconnect it subscribes again from its last number. Groups carry the caller's tenant in their name, so asking
/// for another tenant's job id joins a group nothing is ever sent to, and its backlog query finds nothing.
/// "resync" asks clients to subscribe again (sent when this node's database listener reconnects).
/// </summary>
[Authorize(AuthenticationSchemes = Schemes)]
public sealed class JobsHub(PlatformDbContext db, TenantContext tenant) : Hub
{
    public const string Path = "/hubs/jobs";
    public const string EventMethod = "jobEvent";
    public const string ResyncMethod = "resync";
    public const int PageSize = 500;
    private const string Schemes = $"{ApiKeyDefaults.Scheme},Identity.Application";

    public static string JobGroup(Guid tenantId, string jobId) => $"job:{tenantId:N}:{jobId}";
    public static string TenantGroup(Guid tenantId) => $"tenant:{tenantId:N}";

    /// <summary>Joins the job's group and returns its events after <paramref name="after"/> (a page; call
    /// <see cref="GetEvents"/> for more while HasMore).</summary>
    public async Task<JobEventBatch> Subscribe(string jobId, long after)
    {
        var t = Caller(jobId, after);
        // Join first, then read: an event committed in between arrives twice (the client drops repeats by seq),
        // never not at all.
        await Groups.AddToGroupAsync(Context.ConnectionId, JobGroup(t, jobId));
        return await ReadAsync(t, jobId, after);
    }

    public Task<JobEventBatch> GetEvents(string jobId, long after) => ReadAsync(Caller(jobId, after), jobId, after);

    public Task Unsubscribe(string jobId) => Groups.RemoveFromGroupAsync(Context.ConnectionId, JobGroup(Caller(jobId, 0), jobId));

    /// <summary>Every event of every job of the caller's tenant (list pages).</summary>
    public Task SubscribeTenant() => Groups.AddToGroupAsync(Context.ConnectionId, TenantGroup(Caller(null, 0)));

    private Guid Caller(string? jobId, long after)
    {
        if (jobId is not null && (jobId.Length is 0 or > JobEventPublisher.MaxJobIdLength))
            throw new HubException($"A job id is 1 to {JobEventPublisher.MaxJobIdLength} characters.");
        if (after < 0) throw new HubException("'after' must not be negative.");
        return Guid.TryParse(Context.User?.FindFirst(LoomIdentity.TenantClaim)?.Value, out var id)
            ? id
            : throw new HubException("This connection has no tenant.");
    }

    private async Task<JobEventBatch> ReadAsync(Guid tenantId, string jobId, long after)
    {
        tenant.TenantId = tenantId; // the query filter scopes the read to the caller's tenant
        var rows = await db.JobEvents.AsNoTracking()
            .Where(e => e.JobId == jobId && e.Seq > after)
            .OrderBy(e => e.Seq).Take(PageSize + 1)
            .ToListAsync(Context.ConnectionAborted);
        var events = rows.Take(PageSize).Select(JobEventRows.ToMessage).ToList();
        return new JobEventBatch(events, rows.Count > PageSize);
    }
}
