using Loom.Tests.Shared;

namespace Loom.Benchmarks;

/// <summary>Suite <c>cluster load [--minutes M]</c>: <see cref="LoadRun"/> (the overload test of tests/Cluster.Tests,
/// LOOM_CLUSTER_LOAD_SECONDS there) for M minutes, 5 by default: the cluster's capacity, then twice that rate; the
/// statuses, every node's memory and the pools' audit at the end. Exit code 1 when anything but 200s and retryable
/// refusals came back or a pool is not clean.</summary>
internal static class ClusterLoadBenchmark
{
    public static async Task RunAsync(string[] args)
    {
        var minutes = ClusterBenchmark.Option(args, "--minutes") ?? 5;
        Console.WriteLine($"cluster load: {Machine.Describe()}");
        Console.WriteLine($"commit {ClusterBenchmark.Commit()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; twice the measured capacity for {minutes} min");
        await using var cluster = await OverloadCluster.StartAsync();
        var result = await LoadRun.RunAsync(cluster, TimeSpan.FromMinutes(minutes), overload: 2, capacityWindow: TimeSpan.FromSeconds(20), Console.WriteLine);
        foreach (var line in result.Describe()) Console.WriteLine(line);
        var clean = result.Unexpected.Count == 0 && result.Refusals.All(r => r.RetryAfter && r.Envelope) && result.Drained
                    && result.Pools.All(p => p.AuditFailures == 0 && p.KvPages == 0);
        Console.WriteLine($"verdict: {(clean ? "only 200s and retryable refusals, pools clean" : "FAILED (see above)")}; load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
        if (!clean) Environment.ExitCode = 1;
    }
}
