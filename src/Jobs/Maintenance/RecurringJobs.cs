using Hangfire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.Maintenance;

/// <summary>Registers (or updates) the recurring maintenance jobs when a jobs process starts. Every jobs process
/// does this; Hangfire keeps one definition per id and fires each occurrence once across all servers.</summary>
internal sealed class RecurringJobs(IRecurringJobManager manager, IOptions<JobsOptions> options) : IHostedService
{
    public const string BlobCollection = "blob-collection";
    public const string UsageRollup = "usage-rollup";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var utc = new RecurringJobOptions { TimeZone = TimeZoneInfo.Utc };
        manager.AddOrUpdate<BlobCollectionJob>(BlobCollection, j => j.RunAsync(CancellationToken.None), o.BlobCollectionCron, utc);
        manager.AddOrUpdate<UsageRollupJob>(UsageRollup, j => j.RunAsync(CancellationToken.None), o.UsageRollupCron, utc);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
