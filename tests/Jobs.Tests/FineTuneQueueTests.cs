using System.Diagnostics;
using Hangfire;
using Xunit.Abstractions;
using Loom.Jobs.FineTuning;
using static Loom.Jobs.Tests.FineTuneCluster;

namespace Loom.Jobs.Tests;

/// <summary>Fine-tunes go to a Hangfire queue named for their base model: a jobs-only node (no engine) never takes one,
/// a job for a model nobody serves waits queued, and a node whose engine serves the model trains it.</summary>
public sealed class FineTuneQueueTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly FineTuneCluster _cluster = new();

    public Task InitializeAsync() => _cluster.InitializeAsync();
    public Task DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task AJobsOnlyNodeLeavesAFineTuneQueuedAndANodeServingItsModelTrainsIt()
    {
        await using var api = _cluster.Node("api", "api");
        await using var jobsOnly = _cluster.Node("jobs", "jobs");
        _ = jobsOnly.Server; // its Hangfire server (default queue) is up before the job exists
        await _cluster.RegisterModelAsync(api);
        var client = await TenantClientAsync(api);
        var id = await CreateJobAsync(client, await UploadAsync(client, Examples(3)), seed: 5, epochs: 2);
        string queue = FineTuneQueues.For(ModelName);

        // Nobody serves tiny-chat: the job waits in its model's queue, queued, neither taken nor failed.
        await Task.Delay(JobsDatabase.QueuePollInterval * 4);
        Assert.Equal("queued", (await _cluster.RowAsync(id)).Status);
        var monitoring = _cluster.Storage.GetMonitoringApi();
        var waiting = monitoring.EnqueuedJobs(queue, 0, 10);
        var hangfireId = Assert.Single(waiting).Key;
        Assert.Equal(0, monitoring.EnqueuedCount("default"));
        Assert.DoesNotContain((await _cluster.EventsAsync(id)).Select(e => e.Kind), k => k is "started" or "failed");

        // A node whose engine serves tiny-chat starts: its fine-tune server takes the job and trains it.
        var watch = Stopwatch.StartNew();
        await using var engine = _cluster.Node("engine", "inference", servesModel: true);
        _ = engine.Server;
        output.WriteLine($"engine node up in {watch.Elapsed.TotalSeconds:F1} s");
        var row = await _cluster.FinishedAsync(id, TimeSpan.FromSeconds(90));
        output.WriteLine($"job {row.Status} {watch.Elapsed.TotalSeconds:F1} s after the engine node started ({row.Step} steps, started {(row.StartedAt - row.CreatedAt)?.TotalSeconds:F1} s after create)");
        Assert.True(row.Status == "succeeded", $"{row.Status} {row.ErrorCode} {row.ErrorMessage}");
        var processing = monitoring.JobDetails(hangfireId).History.Where(h => h.StateName == "Processing").ToList();
        Assert.NotEmpty(processing);
        // Only the engine node's fine-tune server (named for the queue it listens to) ever ran it.
        Assert.All(processing, h => Assert.Contains($":{queue}:", h.Data["ServerId"]));
    }
}
