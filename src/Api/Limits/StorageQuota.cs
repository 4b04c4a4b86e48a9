using Loom.Api.Errors;
using Loom.Data;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Api.Limits;

/// <summary>Stored bytes per tenant (adapters plus files, through the tenant query filter) against <see cref="UploadOptions.MaxStoredBytesPerTenant"/>.</summary>
public sealed class StorageQuota(PlatformDbContext db, IOptions<UploadOptions> options)
{
    public async Task<long> UsedAsync(CancellationToken ct)
    {
        var adapters = await db.Adapters.SumAsync(a => (long?)a.SizeBytes, ct) ?? 0L;
        var files = await db.Files.SumAsync(f => (long?)f.Bytes, ct) ?? 0L;
        return adapters + files;
    }

    /// <summary>Throws 413 (<c>storage_quota_exceeded</c>) when adding <paramref name="bytes"/> would pass the tenant's quota.</summary>
    public async Task EnsureRoomAsync(long bytes, CancellationToken ct)
    {
        var max = options.Value.MaxStoredBytesPerTenant;
        var used = await UsedAsync(ct);
        if (used + bytes > max)
            throw new ApiRequestException(StatusCodes.Status413PayloadTooLarge,
                $"Storing {bytes} more bytes would pass your tenant's storage quota ({used} of {max} bytes used). Delete adapters or files first.",
                code: "storage_quota_exceeded");
    }
}
