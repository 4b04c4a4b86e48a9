using System.Security.Cryptography;
using System.Text;
using Loom.Data.Audit;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Data.Keys;

/// <summary>A key just created: the secret is returned here once and never again.</summary>
public sealed record CreatedApiKey(ApiKey Key, string Secret);

/// <summary>What a new key is: its name, default priority, scopes and optional expiry.</summary>
public sealed record NewApiKey(
    string Name, RequestPriority Priority = RequestPriority.Interactive, ApiKeyScopes Scopes = ApiKeyScopes.Inference, DateTimeOffset? ExpiresAt = null);

/// <summary>A key that authenticated, with its tenant's limits and fair-share weight.</summary>
public sealed record AuthenticatedKey(ApiKey Key, int? RequestsPerMinute, int? TokensPerMinute, double ShareWeight);

/// <summary>Creates, lists, revokes and authenticates API keys. Only SHA-256 hashes are stored.</summary>
public sealed class ApiKeyService(PlatformDbContext db, AuditLog audit, TimeProvider clock)
{
    public const string SecretPrefix = "sk-loom-";
    private const int DisplayPrefixLength = 12;
    private static readonly TimeSpan LastUsedResolution = TimeSpan.FromMinutes(1);
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public Task<CreatedApiKey> CreateAsync(Guid tenantId, string name, CancellationToken ct = default) =>
        CreateAsync(tenantId, new NewApiKey(name), ct);

    public Task<CreatedApiKey> CreateAsync(Guid tenantId, string name, RequestPriority priority, CancellationToken ct = default) =>
        CreateAsync(tenantId, new NewApiKey(name, priority), ct);

    public async Task<CreatedApiKey> CreateAsync(Guid tenantId, NewApiKey spec, CancellationToken ct = default)
    {
        var name = spec.Name?.Trim() ?? "";
        if (name.Length is 0 or > 200)
            throw new ArgumentException("A key name must be 1 to 200 characters.", nameof(spec));
        if (spec.Scopes == ApiKeyScopes.None || (spec.Scopes & ~ApiKeyScopes.All) != 0)
            throw new ArgumentException("A key needs at least one known scope.", nameof(spec));
        var now = clock.GetUtcNow();
        if (spec.ExpiresAt is { } expires && expires <= now)
            throw new ArgumentException("A key's expiry must be in the future.", nameof(spec));
        var secret = NewSecret();
        var key = new ApiKey
        {
            Id = Guid.NewGuid(),
            TenantId = tenantId,
            Name = name,
            Prefix = secret[..DisplayPrefixLength],
            SecretHash = Hash(secret),
            CreatedAt = now,
            Priority = spec.Priority,
            Scopes = spec.Scopes,
            ExpiresAt = spec.ExpiresAt,
        };
        db.ApiKeys.Add(key);
        audit.Add("api_key.created", tenantId, "api_key", key.Id.ToString(),
            $"name={name}; scopes={key.Scopes}; expires={key.ExpiresAt?.ToString("O") ?? "never"}");
        await db.SaveChangesAsync(ct);
        return new CreatedApiKey(key, secret);
    }

    /// <summary>The current tenant's keys, newest first (scoped by the tenant query filter).</summary>
    public Task<List<ApiKey>> ListAsync(CancellationToken ct = default) =>
        db.ApiKeys.AsNoTracking().OrderByDescending(k => k.CreatedAt).ToListAsync(ct);

    /// <summary>Revokes one of the current tenant's keys; false when no such key is visible to the tenant.</summary>
    public async Task<bool> RevokeAsync(Guid id, CancellationToken ct = default)
    {
        var key = await db.ApiKeys.SingleOrDefaultAsync(k => k.Id == id, ct);
        if (key is null) return false;
        if (key.RevokedAt is null) audit.Add("api_key.revoked", key.TenantId, "api_key", key.Id.ToString(), $"name={key.Name}");
        key.RevokedAt ??= clock.GetUtcNow();
        await db.SaveChangesAsync(ct);
        return true;
    }

    /// <summary>Finds the live key for a presented secret, across tenants (authentication precedes tenant resolution).</summary>
    public async Task<AuthenticatedKey?> AuthenticateAsync(string presented, CancellationToken ct = default)
    {
        if (!LooksLikeSecret(presented)) return null;
        var hash = Hash(presented);
        var found = await db.ApiKeys.IgnoreQueryFilters().AsNoTracking()
            .Where(k => k.SecretHash == hash)
            .Join(db.Tenants, k => k.TenantId, t => t.Id, (k, t) => new { Key = k, t.RequestsPerMinute, t.TokensPerMinute, t.ShareWeight, t.SuspendedAt })
            .SingleOrDefaultAsync(ct);
        var now = clock.GetUtcNow();
        // A suspended tenant's keys stop working until an administrator resumes it.
        if (found is null || found.Key.IsRevoked || found.Key.IsExpired(now) || found.SuspendedAt is not null) return null;

        // Record use at most once a minute per key, so authentication does not write on every request.
        if (found.Key.LastUsedAt is not { } last || now - last > LastUsedResolution)
        {
            await db.ApiKeys.IgnoreQueryFilters().Where(k => k.Id == found.Key.Id)
                .ExecuteUpdateAsync(u => u.SetProperty(k => k.LastUsedAt, now), ct);
            found.Key.LastUsedAt = now;
        }
        return new AuthenticatedKey(found.Key, found.RequestsPerMinute, found.TokensPerMinute, found.ShareWeight);
    }

    /// <summary>Syntactic check: the prefix, then only base-62 characters, of the expected length.</summary>
    public static bool LooksLikeSecret(string? s) =>
        s is not null && s.Length == SecretPrefix.Length + 43 && s.StartsWith(SecretPrefix, StringComparison.Ordinal)
        && s.AsSpan(SecretPrefix.Length).IndexOfAnyExcept(Alphabet) < 0;

    internal static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    private static string NewSecret()
    {
        // 43 base-62 characters carry ~256 bits of entropy.
        var sb = new StringBuilder(SecretPrefix, SecretPrefix.Length + 43);
        for (var i = 0; i < 43; i++) sb.Append(Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)]);
        return sb.ToString();
    }
}
