using System.Diagnostics;
using Hangfire;
using Loom.Jobs.Worker;
using Xunit.Abstractions;

namespace Loom.Jobs.Tests;

/// <summary>kill -9 of a jobs process mid-job: the other process runs the job again within the documented bound.</summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly JobsDatabase _db = new();

    public Task InitializeAsync() => _db.InitializeAsync();
    public Task DisposeAsync() => _db.DisposeAsync();

    [Fact]
    public async Task AKilledServersJobRunsAgainOnTheOtherWithinInvisibilityPlusPoll()
    {
        // Both servers up before the job exists, so whichever takes it is killed while it runs.
        var starting = new[] { WorkerProcess.StartAsync(_db.Settings), WorkerProcess.StartAsync(_db.Settings) };
        await using var first = await starting[0];
        await using var second = await starting[1];
        _db.Client.Enqueue<ProbeJobs>(j => j.Run("crash", 12, CancellationToken.None));
        Assert.True(await JobsDatabase.UntilAsync(async () => (await _db.RunsAsync()).Any(r => r.Key == "crash"), TimeSpan.FromSeconds(30)),
            $"the job did not start: {first.Output} {second.Output}");
        var takerPid = (await _db.RunsAsync()).First(r => r.Key == "crash").Pid;
        var (a, b) = takerPid == first.Pid ? (first, second) : (second, first);

        a.KillHard();
        var sinceKill = Stopwatch.StartNew();
        Assert.True(await JobsDatabase.UntilAsync(async () => (await _db.RunsAsync()).Any(r => r.Key == "crash" && r.Pid == b.Pid && r.Event == "start"), TimeSpan.FromSeconds(40)),
            "the killed server's job never ran again");
        var recovery = sinceKill.Elapsed;
        output.WriteLine($"job running again {recovery.TotalSeconds:F1} s after kill -9 (bound {JobsDatabase.InvisibilityTimeout + JobsDatabase.QueuePollInterval})");
        // The documented bound is InvisibilityTimeout + QueuePollInterval; allow a few seconds for a loaded machine.
        Assert.True(recovery < JobsDatabase.InvisibilityTimeout + JobsDatabase.QueuePollInterval + TimeSpan.FromSeconds(4), $"took {recovery}");

        Assert.True(await JobsDatabase.UntilAsync(async () => (await _db.RunsAsync()).Any(r => r.Key == "crash" && r.Event == "done"), TimeSpan.FromSeconds(30)));
        var runs = (await _db.RunsAsync()).Where(r => r.Key == "crash").ToList();
        Assert.Equal([(a.Pid, "start"), (b.Pid, "start"), (b.Pid, "done")], runs.Select(r => (r.Pid, r.Event)));
    }
}
