using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Portal.Admin;

/// <summary>A tenant as the administration page lists it.</summary>
public sealed record TenantRow(Guid Id, string Name, double ShareWeight, int? RequestsPerMinute, int? TokensPerMinute, int Users, DateTimeOffset CreatedAt, DateTimeOffset? SuspendedAt);

/// <summary>The settings an administrator edits; null limits use the configured defaults.</summary>
public sealed record TenantSettings(string Name, double ShareWeight, int? RequestsPerMinute, int? TokensPerMinute);

/// <summary>A refused change, with the field it concerns.</summary>
public sealed class AdminInputException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>Tenants for administrators: list, create, change name, share and limits, suspend and resume. Each change
/// writes an audit entry in the same SaveChanges.</summary>
public sealed class TenantAdministration(PlatformDbContext db, AuditLog audit, TimeProvider clock)
{
    public const double MaxShare = 100;

    public Task<List<TenantRow>> ListAsync(CancellationToken ct) =>
        db.Tenants.AsNoTracking().OrderBy(t => t.Name)
            .Select(t => new TenantRow(t.Id, t.Name, t.ShareWeight, t.RequestsPerMinute, t.TokensPerMinute,
                db.Users.Count(u => u.TenantId == t.Id), t.CreatedAt, t.SuspendedAt))
            .ToListAsync(ct);

    public async Task<Tenant> CreateAsync(TenantSettings settings, CancellationToken ct)
    {
        var tenant = new Tenant { Id = Guid.NewGuid(), Name = "", CreatedAt = clock.GetUtcNow() };
        await ApplyAsync(tenant, settings, ct);
        db.Tenants.Add(tenant);
        audit.Add("tenant.created", tenant.Id, "tenant", tenant.Id.ToString(), Describe(tenant));
        await SaveAsync(ct);
        return tenant;
    }

    public async Task UpdateAsync(Guid id, TenantSettings settings, CancellationToken ct)
    {
        var tenant = await db.Tenants.SingleOrDefaultAsync(t => t.Id == id, ct) ?? throw new AdminInputException("name", "The tenant no longer exists.");
        var before = Describe(tenant);
        await ApplyAsync(tenant, settings, ct);
        audit.Add("tenant.updated", tenant.Id, "tenant", tenant.Id.ToString(), $"{before} -> {Describe(tenant)}");
        await SaveAsync(ct);
    }

    private static string Describe(Tenant t) =>
        FormattableString.Invariant($"name={t.Name}; share={t.ShareWeight}; rpm={t.RequestsPerMinute?.ToString() ?? "default"}; tpm={t.TokensPerMinute?.ToString() ?? "default"}");

    /// <summary>Suspends (keys stop authenticating, users cannot sign in) or resumes a tenant.</summary>
    public async Task SetSuspendedAsync(Guid id, bool suspended, CancellationToken ct)
    {
        var tenant = await db.Tenants.SingleAsync(t => t.Id == id, ct);
        if (suspended == tenant.SuspendedAt is not null) return;
        tenant.SuspendedAt = suspended ? clock.GetUtcNow() : null;
        audit.Add(suspended ? "tenant.suspended" : "tenant.resumed", tenant.Id, "tenant", tenant.Id.ToString(), $"name={tenant.Name}");
        await db.SaveChangesAsync(ct);
    }

    private async Task ApplyAsync(Tenant tenant, TenantSettings s, CancellationToken ct)
    {
        var name = s.Name.Trim();
        if (name.Length == 0) throw new AdminInputException("name", "Give the tenant a name.");
        if (name.Length > 200) throw new AdminInputException("name", "A tenant name is at most 200 characters.");
        if (await db.Tenants.AnyAsync(t => t.Name == name && t.Id != tenant.Id, ct)) throw new AdminInputException("name", $"A tenant named “{name}” already exists.");
        if (!double.IsFinite(s.ShareWeight) || s.ShareWeight <= 0 || s.ShareWeight > MaxShare)
            throw new AdminInputException("share", $"The share must be greater than 0 and at most {MaxShare}.");
        if (s.RequestsPerMinute is < 1) throw new AdminInputException("rpm", "Requests per minute must be at least 1, or empty for the default.");
        if (s.TokensPerMinute is < 1) throw new AdminInputException("tpm", "Tokens per minute must be at least 1, or empty for the default.");
        tenant.Name = name;
        tenant.ShareWeight = s.ShareWeight;
        tenant.RequestsPerMinute = s.RequestsPerMinute;
        tenant.TokensPerMinute = s.TokensPerMinute;
    }

    private async Task SaveAsync(CancellationToken ct)
    {
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.UniqueViolation })
        {
            db.ChangeTracker.Clear();
            throw new AdminInputException("name", "A tenant with that name already exists.");
        }
    }
}
