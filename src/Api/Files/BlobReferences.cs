using Loom.Data;
using Loom.Data.Blobs;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Files;

/// <summary>Blobs are shared by content across tenants: one is deleted only when no row of any tenant points at it.</summary>
public static class BlobReferences
{
    public static async Task DeleteIfUnreferencedAsync(PlatformDbContext db, IBlobStore blobs, string sha256, CancellationToken ct)
    {
        var used = await db.Files.IgnoreQueryFilters().AnyAsync(f => f.BlobSha256 == sha256, ct)
                   || await db.Adapters.IgnoreQueryFilters().AnyAsync(a => a.BlobSha256 == sha256, ct);
        if (!used) await blobs.DeleteAsync(sha256, ct);
    }
}
