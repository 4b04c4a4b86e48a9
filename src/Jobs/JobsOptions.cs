namespace Loom.Jobs;

/// <summary>Bound from "Jobs"; validated at start.</summary>
public sealed class JobsOptions
{
    /// <summary>PostgreSQL schema of Hangfire's tables in Loom's database (created at start).</summary>
    public string Schema { get; set; } = "hangfire";

    /// <summary>
    /// How long a fetched job stays invisible to other servers. Sliding: a live server refreshes it while the job
    /// runs, so only a dead server's job becomes visible again. With <see cref="QueuePollInterval"/> this bounds how
    /// soon a killed node's job runs again elsewhere: at most InvisibilityTimeout + QueuePollInterval (35 s default).
    /// </summary>
    public TimeSpan InvisibilityTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often idle workers look for jobs that became visible again (new jobs arrive by NOTIFY at once).</summary>
    public TimeSpan QueuePollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Worker threads per jobs process.</summary>
    public int WorkerCount { get; set; } = 4;

    /// <summary>Workers of the fine-tune server in a process that serves a base model (<see cref="FineTuning.FineTuneServer"/>):
    /// fine-tunes of that model this node trains at once. 0: this node takes no fine-tunes.</summary>
    public int FineTuneWorkerCount { get; set; } = 2;

    /// <summary>Unreferenced blobs younger than this are kept (an upload may still be committing its row).</summary>
    public TimeSpan BlobGracePeriod { get; set; } = TimeSpan.FromHours(1);

    /// <summary>When blob collection runs (cron, UTC; a sixth leading field means seconds).</summary>
    public string BlobCollectionCron { get; set; } = "17 * * * *";

    /// <summary>When the usage roll-up runs.</summary>
    public string UsageRollupCron { get; set; } = "*/10 * * * *";

    /// <summary>Closed days the roll-up recomputes on every run, so usage written late (a retried write) is counted.</summary>
    public int UsageRollupLookbackDays { get; set; } = 7;

    internal IEnumerable<string> Problems()
    {
        if (string.IsNullOrWhiteSpace(Schema) || !Schema.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_'))
            yield return "Jobs:Schema must be a lower-case identifier.";
        if (InvisibilityTimeout < TimeSpan.FromSeconds(2)) yield return "Jobs:InvisibilityTimeout must be at least 2 seconds.";
        if (QueuePollInterval < TimeSpan.FromMilliseconds(100)) yield return "Jobs:QueuePollInterval must be at least 100 ms.";
        if (WorkerCount is < 1 or > 256) yield return "Jobs:WorkerCount must be between 1 and 256.";
        if (FineTuneWorkerCount is < 0 or > 64) yield return "Jobs:FineTuneWorkerCount must be between 0 and 64.";
        if (BlobGracePeriod < TimeSpan.Zero) yield return "Jobs:BlobGracePeriod must not be negative.";
        if (UsageRollupLookbackDays is < 1 or > 366) yield return "Jobs:UsageRollupLookbackDays must be between 1 and 366.";
    }
}
