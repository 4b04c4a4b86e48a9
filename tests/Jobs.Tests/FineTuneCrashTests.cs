using System.Diagnostics;
using System.Text.Json;
using Hangfire;
using Loom.Data.Entities;
using Loom.Tests.Shared;
using Xunit.Abstractions;
using static Loom.Jobs.Tests.FineTuneCluster;

namespace Loom.Jobs.Tests;

/// <summary>
/// kill -9 of the real Loom process training a fine-tune, mid-run: after a restart (jobs and inference in one process)
/// or on another live inference node (jobs and inference in separate processes), the job resumes from its last complete
/// checkpoint and ends with an adapter bitwise equal to an uninterrupted run with the same seed. Steps lost are bounded by
/// the back-pressure on checkpoint writes: at most one interval plus FineTuning:CheckpointLagSteps, whose default is 0 (the
/// write overlaps the next step's forward and backward; its update waits): at most one interval in both cases, and every
/// checkpoint became durable before training completed a step past it.
/// </summary>
public sealed class FineTuneCrashTests(ITestOutputHelper output) : IAsyncLifetime
{
    // 8 examples x 4 epochs = 32 steps, a checkpoint every 4.
    private const int ExampleCount = 8, Epochs = 4, Seed = 11;
    private readonly FineTuneCluster _cluster = new();

    public Task InitializeAsync() => _cluster.InitializeAsync();
    public Task DisposeAsync() => _cluster.DisposeAsync();

    private Task<NodeProcess> StartAsync(string name, string roles, bool servesModel) =>
        NodeProcess.StartAsync(name, roles, _cluster.Settings(name, servesModel), readyPath: "/healthz");

    [Fact]
    public async Task AKilledJobsAndInferenceNodeResumesAfterRestartBitwiseEqual()
    {
        await using var api = _cluster.Node("api", "api");
        await _cluster.RegisterModelAsync(api);
        var client = await TenantClientAsync(api);
        var file = await UploadAsync(client, Examples(ExampleCount));

        const int lag = 0; // the default: a kill loses at most one interval
        var first = await StartAsync("a", "jobs,inference", servesModel: true);
        try
        {
            var reference = await CreateJobAsync(client, file, Seed, Epochs);
            Assert.Equal("succeeded", (await _cluster.FinishedAsync(reference, TimeSpan.FromSeconds(60), () => first.Output)).Status);

            var id = await CreateJobAsync(client, file, Seed, Epochs);
            var kill = await KillAfterACheckpointAsync(id, _ => first);
            // The same node comes back (same checkpoint folder, as after a reboot).
            await using var restarted = await StartAsync("a", "jobs,inference", servesModel: true);
            await CheckRecoveryAsync(id, reference, kill, lag, () => restarted.Output);
        }
        finally
        {
            await first.DisposeAsync();
        }
    }

    [Fact]
    public async Task AKilledInferenceNodesJobResumesOnAnotherLiveNodeBitwiseEqual()
    {
        await using var api = _cluster.Node("api", "api");
        await _cluster.RegisterModelAsync(api);
        var client = await TenantClientAsync(api);
        var file = await UploadAsync(client, Examples(ExampleCount));

        // A jobs-only node and two inference nodes, each with its own checkpoint folder (a resume elsewhere reads the blob).
        var starting = new[] { StartAsync("jobs", "jobs", servesModel: false), StartAsync("b", "inference", servesModel: true), StartAsync("c", "inference", servesModel: true) };
        try { await Task.WhenAll(starting); }
        catch
        {
            foreach (var t in starting.Where(t => t.IsCompletedSuccessfully)) await (await t).DisposeAsync();
            throw;
        }
        await using var jobs = await starting[0];
        await using var b = await starting[1];
        await using var c = await starting[2];
        var nodes = new[] { b, c };

        var reference = await CreateJobAsync(client, file, Seed, Epochs);
        Assert.Equal("succeeded", (await _cluster.FinishedAsync(reference, TimeSpan.FromSeconds(60), () => b.Output + c.Output)).Status);

        var id = await CreateJobAsync(client, file, Seed, Epochs);
        var kill = await KillAfterACheckpointAsync(id, row => nodes.Single(n => row.LeaseOwner!.Contains($":{n.Pid}:", StringComparison.Ordinal)));
        var survivor = nodes.Single(n => n != kill.Victim);
        await CheckRecoveryAsync(id, reference, kill, 0, () => survivor.Output); // the default lag 0: at most one interval

        // Hangfire ran it on the killed node, then on the survivor; the jobs-only node never took it.
        var servers = await ProcessingServersAsync(id);
        Assert.Equal([kill.Victim.Pid, survivor.Pid], servers.Select(s => nodes.Single(n => s.Contains($":{n.Pid}:", StringComparison.Ordinal)).Pid));
        Assert.DoesNotContain(servers, s => s.Contains($":{jobs.Pid}:", StringComparison.Ordinal));
    }

    private sealed record Kill(NodeProcess Victim, int StepAtKill, int LastCheckpoint, Stopwatch SinceKill);

    /// <summary>Waits until the run has recorded a checkpoint and trained past it, then SIGKILLs the node that runs it.</summary>
    private async Task<Kill> KillAfterACheckpointAsync(string id, Func<FineTuneJob, NodeProcess> runner)
    {
        FineTuneJob? row = null;
        Assert.True(await JobsDatabase.UntilAsync(async () =>
        {
            var checkpoints = await _cluster.CheckpointsAsync(id);
            row = await _cluster.RowAsync(id);
            return checkpoints.Count > 0 && row.Step > checkpoints[^1].Step && row.LeaseOwner is not null || FineTuneStatus.IsFinal(row.Status);
        }, TimeSpan.FromSeconds(60)), "no checkpoint within a minute");
        Assert.Equal("running", row!.Status);
        var victim = runner(row);
        victim.KillHard();
        var sinceKill = Stopwatch.StartNew();
        // What the dead process left: the step it had reached and its last complete checkpoint.
        var after = await _cluster.RowAsync(id);
        int lastCheckpoint = (await _cluster.CheckpointsAsync(id)).Max(c => c.Step);
        output.WriteLine($"killed pid {victim.Pid} at step {after.Step} of {after.TotalSteps}; last complete checkpoint at step {lastCheckpoint}");
        return new Kill(victim, after.Step, lastCheckpoint, sinceKill);
    }

    private async Task CheckRecoveryAsync(string id, string reference, Kill kill, int lag, Func<string> diagnostics)
    {
        Assert.True(await JobsDatabase.UntilAsync(async () => (await _cluster.EventsAsync(id)).Count(e => e.Kind == "started") >= 2, TimeSpan.FromSeconds(45)),
            $"the job did not start again: {diagnostics()}");
        var recovery = kill.SinceKill.Elapsed;
        var row = await _cluster.FinishedAsync(id, TimeSpan.FromSeconds(60), diagnostics);
        Assert.True(row.Status == "succeeded", $"{row.Status} {row.ErrorCode} {row.ErrorMessage}");

        var started = (await _cluster.EventsAsync(id)).Where(e => e.Kind == "started").ToList();
        Assert.Equal(2, started.Count);
        using var data = JsonDocument.Parse(started[1].Payload);
        int resumedFrom = data.RootElement.GetProperty("data").GetProperty("resumed_from_step").GetInt32();
        int lost = kill.StepAtKill - resumedFrom;
        output.WriteLine($"running again {recovery.TotalSeconds:F1} s after kill -9 (lease {LeaseDuration.TotalSeconds:F0} s, invisibility {JobsDatabase.InvisibilityTimeout.TotalSeconds:F0} s); resumed from step {resumedFrom}; {lost} step(s) lost (bound {CheckpointEvery + lag})");
        Assert.Equal(kill.LastCheckpoint, resumedFrom);       // the last complete checkpoint
        Assert.InRange(lost, 0, CheckpointEvery + lag);       // one interval plus the lag the back-pressure allows
        Assert.Equal(await _cluster.AdapterHashAsync(reference), await _cluster.AdapterHashAsync(id)); // bitwise equal
        CheckBackPressure(await _cluster.EventsAsync(reference), lag);
        CheckBackPressure(await _cluster.EventsAsync(id), lag);
    }

    /// <summary>Every checkpoint is at a multiple of the interval, and became durable before training was more than
    /// <paramref name="lag"/> steps past it.</summary>
    private void CheckBackPressure(List<(string Kind, string Payload)> events, int lag)
    {
        var checkpoints = events.Where(e => e.Kind == "checkpoint").Select(e => JsonDocument.Parse(e.Payload).RootElement.GetProperty("data").Clone()).ToList();
        Assert.NotEmpty(checkpoints);
        foreach (var c in checkpoints)
        {
            int step = c.GetProperty("step").GetInt32(), reached = c.GetProperty("training_step").GetInt32();
            output.WriteLine($"checkpoint at step {step}: durable when training was at step {reached}; write {c.GetProperty("write_ms").GetDouble():F0} ms, stall {c.GetProperty("stall_ms").GetDouble():F1} ms");
            Assert.Equal(0, step % CheckpointEvery);
            Assert.InRange(reached, step, step + lag);
        }
    }

    /// <summary>The ServerId of every Processing state of the job's Hangfire run, oldest first, once Hangfire has marked the run
    /// succeeded (a moment after the fine-tune's own row).</summary>
    private async Task<List<string>> ProcessingServersAsync(string id)
    {
        var monitoring = _cluster.Storage.GetMonitoringApi();
        var guid = JobGuid(id);
        string? hangfireId = null;
        Assert.True(await JobsDatabase.UntilAsync(() =>
        {
            hangfireId = monitoring.SucceededJobs(0, 100).Where(j => j.Value.Job.Args[0] is Guid g && g == guid).Select(j => j.Key).SingleOrDefault();
            return Task.FromResult(hangfireId is not null);
        }, TimeSpan.FromSeconds(30)), "Hangfire did not mark the run succeeded");
        return monitoring.JobDetails(hangfireId).History.Where(h => h.StateName == "Processing").OrderBy(h => h.CreatedAt).Select(h => h.Data["ServerId"]).ToList();
    }
}
