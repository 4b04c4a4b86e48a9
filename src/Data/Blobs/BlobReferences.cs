using Microsoft.EntityFrameworkCore;

namespace Loom.Data.Blobs;

/// <summary>
/// Blobs are shared by content across tenants, so no request deletes one: a blob that no row of any tenant refers
/// to is removed by the blob collection job once it is older than the grace period.
/// </summary>
public static class BlobReferences
{
    public static async Task<bool> IsReferencedAsync(PlatformDbContext db, string sha256, CancellationToken ct) =>
        await db.Files.IgnoreQueryFilters().AnyAsync(f => f.BlobSha256 == sha256, ct)
        || await db.Adapters.IgnoreQueryFilters().AnyAsync(a => a.BlobSha256 == sha256, ct)
        || await db.FineTuneCheckpoints.IgnoreQueryFilters().AnyAsync(c => c.BlobSha256 == sha256, ct);
}
