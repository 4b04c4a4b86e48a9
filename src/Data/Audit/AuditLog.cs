using Loom.Data.Entities;

namespace Loom.Data.Audit;

/// <summary>Who is acting in this scope: set by API key authentication, the portal, or a job.</summary>
public sealed class AuditActor
{
    public string Kind { get; set; } = "system";
    public string? Id { get; set; }
    public string? Name { get; set; }
    public string? Ip { get; set; }

    public void Set(string kind, string? id, string? name, string? ip) => (Kind, Id, Name, Ip) = (kind, id, name, ip);
}

/// <summary>
/// Adds audit entries to the scope's <see cref="PlatformDbContext"/>, so an entry is saved by the same SaveChanges
/// (one transaction) as the change it describes: no entry without its change, no change without its entry.
/// </summary>
public sealed class AuditLog(PlatformDbContext db, AuditActor actor, TimeProvider clock)
{
    public void Add(string action, Guid? tenantId, string? targetKind = null, string? targetId = null, string? detail = null) =>
        db.AuditEntries.Add(new AuditEntry
        {
            At = clock.GetUtcNow(), TenantId = tenantId, ActorKind = actor.Kind, ActorId = Cut(actor.Id, 64), ActorName = Cut(actor.Name, 200),
            Action = Cut(action, 64)!, TargetKind = Cut(targetKind, 32), TargetId = Cut(targetId, 64), Ip = Cut(actor.Ip, 64), Detail = Cut(detail, 500),
        });

    private static string? Cut(string? s, int max) => s is null || s.Length <= max ? s : s[..max];
}
