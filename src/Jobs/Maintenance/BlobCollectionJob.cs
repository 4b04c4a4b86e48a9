using Hangfire;
using Loom.Data;
using Loom.Data.Blobs;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.Maintenance;

/// <summary>What one blob collection run did.</summary>
public sealed record BlobCollectionResult(int Examined, int Deleted, long BytesFreed);

/// <summary>
/// Deletes blobs that no file, adapter or checkpoint row of any tenant refers to and that were last written before
/// the grace period. Requests never delete blobs (content is shared across tenants, and another tenant's upload of
/// the same bytes may be committing), so this job is the only way a blob goes. Safe to run twice at once.
/// </summary>
[DisableConcurrentExecution(timeoutInSeconds: 60)]
[AutomaticRetry(Attempts = 3)]
public sealed class BlobCollectionJob(
    IBlobStore blobs, IServiceScopeFactory scopes, TimeProvider clock, IOptions<JobsOptions> options, ILogger<BlobCollectionJob> logger)
{
    public async Task<BlobCollectionResult> RunAsync(CancellationToken ct)
    {
        var cutoff = clock.GetUtcNow() - options.Value.BlobGracePeriod;
        int examined = 0, deleted = 0;
        long freed = 0;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        foreach (var blob in blobs.List().ToList())
        {
            ct.ThrowIfCancellationRequested();
            examined++;
            if (blob.LastWritten >= cutoff) continue;
            if (await blobs.CollectAsync(blob.Sha256, cutoff, c => BlobReferences.IsReferencedAsync(db, blob.Sha256, c), ct))
            {
                deleted++;
                freed += blob.Length;
            }
        }
        logger.LogInformation("Blob collection: {Examined} blobs examined, {Deleted} deleted ({Bytes} bytes)", examined, deleted, freed);
        return new BlobCollectionResult(examined, deleted, freed);
    }
}
