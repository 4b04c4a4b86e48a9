using Xunit.Abstractions;

namespace Loom.Cluster.Tests;

/// <summary>
/// The cluster at twice its measured capacity (<see cref="LoadRun"/> on an <see cref="OverloadCluster"/> of its own:
/// front, two API nodes, two inference nodes): every answer is a 200 or a retryable refusal (429 or 503 with
/// Retry-After, in OpenAI's envelope), never a 500, another status or a dropped request; every node's memory stays
/// bounded; once the load stops the engines drain and each pool's audit is clean with no KV page left held.
/// The overload lasts LOOM_CLUSTER_LOAD_SECONDS (75 s by default; BENCHMARKS.md records a 5-minute run).
/// In the loopback cluster's collection so it does not run beside its tests (both load the two cores).
/// </summary>
[Collection(LoopbackCluster.Collection)]
public sealed class OverloadTests(ITestOutputHelper output)
{
    public const string DurationVariable = "LOOM_CLUSTER_LOAD_SECONDS";

    /// <summary>Resident memory no node of this cluster should reach: the inference nodes hold a 24.5 M-parameter f32
    /// model (98 MB), a 64 MiB pool and a 64 MiB adapter cache; the rest is the .NET host.</summary>
    private const long MemoryBound = 1L << 30;

    [Fact]
    public async Task AtTwiceCapacityEveryAnswerIsA200OrARetryableRefusalAndMemoryAndPoolsStayClean()
    {
        var duration = LoadRun.DurationFrom(DurationVariable, TimeSpan.FromSeconds(75));
        await using var cluster = await OverloadCluster.StartAsync();
        var result = await LoadRun.RunAsync(cluster, duration, overload: 2, capacityWindow: TimeSpan.FromSeconds(20), output.WriteLine);
        foreach (var line in result.Describe()) output.WriteLine(line);

        Assert.Empty(result.Unexpected.Select(u => u.Unexpected));
        Assert.True(result.Count(200) > 0, "no request succeeded");
        // At twice capacity the engines fill up: refusals must have come, each retryable and in the envelope.
        Assert.True(result.Refusals.Count > 0, $"no request was refused at {result.Offered:F1}/s offered against a measured capacity of {result.Capacity:F1}/s");
        Assert.All(result.Refusals, r => Assert.True(r.RetryAfter && r.Envelope, $"a {r.Status} without Retry-After or the error envelope"));
        Assert.Equal(result.Responses.Count, result.Count(200) + result.Refusals.Count);
        // The refusals came from the admission bound (the demo tenant's rate limits are far above this load).
        Assert.True(result.Pools.Sum(p => p.Refused) >= result.Count(503), $"{result.Count(503)} x 503 but the engines refused {result.Pools.Sum(p => p.Refused)}");

        Assert.All(result.Memory, m => Assert.True(m.Peak < MemoryBound && m.HighWater < MemoryBound,
            $"{m.Node}: resident memory reached {LoadRunResult.Mib(Math.Max(m.Peak, m.HighWater))} (bound {LoadRunResult.Mib(MemoryBound)})"));

        Assert.True(result.Drained, "the engines still held sequences a minute after the last answer");
        Assert.All(result.Pools, p =>
        {
            Assert.Equal(0, p.AuditFailures);
            Assert.Equal(0, p.KvPages);
            Assert.Equal(0, p.Sequences);
        });
    }
}
