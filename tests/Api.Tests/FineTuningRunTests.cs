using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Loom.Data;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static Loom.Api.Tests.FineTuningFactory;

namespace Loom.Api.Tests;

/// <summary>The background run of a fine-tuning job, started here as a Hangfire worker would start it: events, checkpoints,
/// the fine-tuned model served at once, resume after an interruption (bitwise equal to an uninterrupted run), corrupt
/// checkpoints never loaded, the lease, pause / resume / cancel.</summary>
public class FineTuningRunTests(FineTuningFactory factory) : IClassFixture<FineTuningFactory>
{
    private static object Job(string file, int seed = 7, int epochs = 2, string suffix = "t") => new
    {
        model = ChatModelFactory.ModelName, training_file = file, seed, suffix,
        hyperparameters = new { n_epochs = epochs, learning_rate_multiplier = 20, rank = 2 },
    };

    private async Task<JsonElement> JobAsync(HttpClient client, string id) => await GetAsync(client, $"/v1/fine_tuning/jobs/{id}");

    private static async Task<List<JsonElement>> EventsAsync(HttpClient client, string id) =>
        (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/events?limit=100")).GetProperty("data").EnumerateArray().Reverse().ToList();

    private Task<T> DbAsync<T>(Func<PlatformDbContext, Task<T>> work) => factory.InTenantAsync(null, work);

    private Task<FineTuneJob> RowAsync(string id)
    {
        var guid = Guid.ParseExact(id["ftjob-".Length..], "N");
        return DbAsync(db => db.FineTuneJobs.IgnoreQueryFilters().AsNoTracking().SingleAsync(j => j.Id == guid));
    }

    private async Task<string> AdapterHashAsync(string id)
    {
        var row = await RowAsync(id);
        return await DbAsync(db => db.Adapters.IgnoreQueryFilters().Where(a => a.Id == row.ResultAdapterId).Select(a => a.BlobSha256).SingleAsync());
    }

    [Fact]
    public async Task AJobTrainsRecordsEventsAndCheckpointsAndItsModelIsServedAtOnce()
    {
        var client = await factory.TenantClientAsync("Acme Corp");
        var file = await UploadAsync(client, Examples(6));
        var id = (await CreateAsync(client, Job(file, suffix: "demo"))).GetProperty("id").GetString()!;
        await factory.RunJobAsync(id);

        var job = await JobAsync(client, id);
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        var model = job.GetProperty("fine_tuned_model").GetString()!;
        Assert.Equal($"ft:{ChatModelFactory.ModelName}:acme-corp:demo:{id["ftjob-".Length..][..8]}", model);
        Assert.True(job.GetProperty("trained_tokens").GetInt64() > 0);
        Assert.NotEqual(JsonValueKind.Null, job.GetProperty("finished_at").ValueKind);

        var kinds = (await EventsAsync(client, id)).Select(e => e.GetProperty("kind").GetString()).ToList();
        Assert.Equal(["created", "validated", "started"], kinds.Take(3));
        Assert.Equal("succeeded", kinds[^1]);
        Assert.Contains("metrics", kinds);
        Assert.Contains("checkpoint", kinds);
        var metrics = (await EventsAsync(client, id)).First(e => e.GetProperty("type").GetString() == "metrics").GetProperty("data");
        Assert.True(metrics.GetProperty("train_loss").GetDouble() > 0);

        // 12 steps, a checkpoint asked for every 4 (taken at the next step boundary the run reaches), the last 2 kept.
        var checkpoints = (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/checkpoints")).GetProperty("data").EnumerateArray().ToList();
        var steps = checkpoints.Select(c => c.GetProperty("step_number").GetInt32()).ToList();
        // (On a fast run the progress reader can lag a few steps, so a later request may land on the same boundary.)
        Assert.InRange(steps.Count, 1, 2);
        Assert.True(steps.Zip(steps.Skip(1)).All(p => p.First > p.Second) && steps.All(s => s is >= 4 and <= 12), string.Join(",", steps));
        Assert.Equal($"{model}:ckpt-step-{steps[0]}", checkpoints[0].GetProperty("fine_tuned_model_checkpoint").GetString());
        Assert.True(checkpoints[0].GetProperty("metrics").GetProperty("train_loss").GetDouble() > 0);

        // The result file: every step's metrics as CSV, a file of the tenant (purpose fine-tune-results).
        var csv = await ResultCsvAsync(client, job);
        Assert.Equal(Enumerable.Range(1, 12), csv.Select(r => r.Step));
        Assert.All(csv, r => Assert.True(r.TrainLoss > 0 && r.LearningRate > 0 && r.ValidLoss is null, $"{r}"));
        var resultFile = job.GetProperty("result_files")[0].GetString()!;
        var meta = await GetAsync(client, $"/v1/files/{resultFile}");
        Assert.Equal("fine-tune-results", meta.GetProperty("purpose").GetString());
        Assert.Equal("step_metrics.csv", meta.GetProperty("filename").GetString());

        var models = await GetAsync(client, "/v1/models");
        Assert.Contains(models.GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == model);
        var chat = await client.PostAsJsonAsync("/v1/chat/completions", new { model, max_tokens = 4, messages = new[] { new { role = "user", content = "word 1:" } } });
        Assert.True(chat.StatusCode == HttpStatusCode.OK, await chat.Content.ReadAsStringAsync());
        // Another tenant cannot use it.
        var other = await factory.TenantClientAsync();
        var refused = await other.PostAsJsonAsync("/v1/chat/completions", new { model, max_tokens = 4, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/files/{resultFile}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/files/{resultFile}/content")).StatusCode);
    }

    [Fact]
    public async Task ADeletedFineTunedModelsBlobGoesWithBlobCollectionAndItsCheckpointsStay()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(6, "-gc"));
        var id = (await CreateAsync(client, Job(file, seed: 9, suffix: "gc"))).GetProperty("id").GetString()!;
        await factory.RunJobAsync(id);
        var row = await RowAsync(id);
        Assert.Equal("succeeded", row.Status);
        var adapter = await DbAsync(db => db.Adapters.IgnoreQueryFilters().AsNoTracking().SingleAsync(a => a.Id == row.ResultAdapterId));
        var checkpoints = await DbAsync(db => db.FineTuneCheckpoints.IgnoreQueryFilters().AsNoTracking().Where(c => c.JobId == row.Id).ToListAsync());
        var checkpointModels = await DbAsync(db => db.Adapters.IgnoreQueryFilters().AsNoTracking().Where(a => a.Name.StartsWith(adapter.Name + ":ckpt-step-")).ToListAsync());
        Assert.NotEmpty(checkpoints);
        Assert.Equal(checkpoints.Count, checkpointModels.Count);

        // Delete the fine-tuned model (an adapter of the tenant): its row goes at once, its blob only with collection.
        var listed = (await GetAsync(client, "/v1/adapters")).GetProperty("data").EnumerateArray().Single(a => a.GetProperty("name").GetString() == adapter.Name);
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/adapters/{listed.GetProperty("id").GetString()}")).StatusCode);
        var mine = new[] { adapter.BlobSha256 }.Concat(checkpoints.Select(c => c.BlobSha256)).Concat(checkpointModels.Select(a => a.BlobSha256)).ToList();
        Assert.All(mine, sha => Assert.True(File.Exists(BlobPath(sha)), sha));
        // Past the grace period (aged by hand), collection removes the model's blob and keeps what rows still refer to.
        foreach (var sha in mine) File.SetLastWriteTimeUtc(BlobPath(sha), DateTime.UtcNow.AddHours(-2));
        await using (var scope = factory.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<Loom.Jobs.Maintenance.BlobCollectionJob>().RunAsync(CancellationToken.None);
        Assert.False(File.Exists(BlobPath(adapter.BlobSha256)), "the deleted model's blob is still there");
        Assert.All(checkpoints, c => Assert.True(File.Exists(BlobPath(c.BlobSha256)), $"checkpoint {c.Step}"));
        Assert.All(checkpointModels, a => Assert.True(File.Exists(BlobPath(a.BlobSha256)), a.Name));
        var chat = await client.PostAsJsonAsync("/v1/chat/completions", new { model = adapter.Name, max_tokens = 3, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.NotFound, chat.StatusCode);
    }

    private string BlobPath(string sha) => Path.Combine(factory.BlobRoot, sha[..2], sha);

    private sealed record CsvRow(int Step, double TrainLoss, double? ValidLoss, double LearningRate);

    /// <summary>The job's one result file, read through /v1/files/{id}/content and parsed.</summary>
    private static async Task<List<CsvRow>> ResultCsvAsync(HttpClient client, JsonElement job)
    {
        var files = job.GetProperty("result_files").EnumerateArray().Select(f => f.GetString()!).ToList();
        Assert.Single(files);
        var text = await client.GetStringAsync($"/v1/files/{files[0]}/content");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("step,train_loss,valid_loss,learning_rate", lines[0]);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        return lines.Skip(1).Select(l => l.Split(',')).Select(c => new CsvRow(int.Parse(c[0], inv), double.Parse(c[1], inv),
            c[2].Length == 0 ? null : double.Parse(c[2], inv), double.Parse(c[3], inv))).ToList();
    }

    [Fact]
    public async Task CheckpointsAreModelsOfTheirTenantUntilRetentionRemovesThem()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(6, "-ckpt"));
        // 18 steps, a checkpoint every 4: more checkpoints than the 2 kept.
        var id = (await CreateAsync(client, Job(file, seed: 5, epochs: 3, suffix: "ck"))).GetProperty("id").GetString()!;
        await factory.RunJobAsync(id);
        var job = await JobAsync(client, id);
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        var model = job.GetProperty("fine_tuned_model").GetString()!;

        var kept = (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/checkpoints")).GetProperty("data").EnumerateArray()
            .Select(c => c.GetProperty("fine_tuned_model_checkpoint").GetString()!).ToList();
        var written = (await EventsAsync(client, id)).Where(e => e.GetProperty("kind").GetString() == "checkpoint")
            .Select(e => $"{model}:ckpt-step-{e.GetProperty("data").GetProperty("step").GetInt32()}").ToList();
        var dropped = written.Except(kept).ToList();
        Assert.Equal(2, kept.Count);
        Assert.NotEmpty(dropped);

        var listed = (await GetAsync(client, "/v1/models")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.All(kept, k => Assert.Contains(k, listed));
        Assert.All(dropped, d => Assert.DoesNotContain(d, listed));
        foreach (var k in kept)
        {
            var chat = await client.PostAsJsonAsync("/v1/chat/completions", new { model = k, max_tokens = 3, messages = new[] { new { role = "user", content = "word 1-ckpt:" } } });
            Assert.True(chat.StatusCode == HttpStatusCode.OK, await chat.Content.ReadAsStringAsync());
            Assert.Equal(k, JsonDocument.Parse(await chat.Content.ReadAsStringAsync()).RootElement.GetProperty("model").GetString());
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/models/{Uri.EscapeDataString(k)}")).StatusCode);
        }
        // A checkpoint retention removed is no model any more.
        var gone = await client.PostAsJsonAsync("/v1/chat/completions", new { model = dropped[0], max_tokens = 3, messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);

        // Another tenant neither sees nor uses them.
        var other = await factory.TenantClientAsync();
        var theirs = (await GetAsync(other, "/v1/models")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.DoesNotContain(theirs, m => m!.StartsWith(model, StringComparison.Ordinal));
        var refused = await other.PostAsJsonAsync("/v1/chat/completions", new { model = kept[0], max_tokens = 3, messages = new[] { new { role = "user", content = "hi" } } });
        await ErrorAssert.IsEnvelopeAsync(refused, HttpStatusCode.NotFound, "model_not_found", "model");
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/models/{Uri.EscapeDataString(kept[0])}")).StatusCode);
    }

    [Fact]
    public async Task AnInterruptedRunResumesFromItsLastCheckpointAndEndsBitwiseEqual()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(6, "-resume"));
        var whole = (await CreateAsync(client, Job(file, seed: 11))).GetProperty("id").GetString()!;
        await factory.RunJobAsync(whole);
        Assert.Equal("succeeded", (await JobAsync(client, whole)).GetProperty("status").GetString());

        var interrupted = (await CreateAsync(client, Job(file, seed: 11))).GetProperty("id").GetString()!;
        var jobGuid = Guid.ParseExact(interrupted["ftjob-".Length..], "N");
        using (var stop = new CancellationTokenSource())
        {
            var run = factory.RunJobAsync(interrupted, stop.Token);
            // Stop the run (as a host shutdown would) once its first checkpoint is recorded.
            while (!await DbAsync(db => db.FineTuneCheckpoints.IgnoreQueryFilters().AnyAsync(c => c.JobId == jobGuid)))
            {
                Assert.False(run.IsCompleted, "the run ended before its first checkpoint");
                await Task.Delay(20);
            }
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        }
        var row = await RowAsync(interrupted);
        Assert.Equal("running", row.Status);
        Assert.Null(row.LeaseOwner); // released for the next run

        await factory.RunJobAsync(interrupted);
        Assert.Equal("succeeded", (await JobAsync(client, interrupted)).GetProperty("status").GetString());
        var started = (await EventsAsync(client, interrupted)).Where(e => e.GetProperty("kind").GetString() == "started").ToList();
        Assert.Equal(2, started.Count);
        Assert.True(started[1].GetProperty("data").GetProperty("resumed_from_step").GetInt32() >= 4, started[1].GetRawText());
        Assert.Equal(await AdapterHashAsync(whole), await AdapterHashAsync(interrupted));
        // The result file holds every step of the last run and the earlier run's metrics up to the resumed step.
        int resumedFrom = started[1].GetProperty("data").GetProperty("resumed_from_step").GetInt32();
        var steps = (await ResultCsvAsync(client, await JobAsync(client, interrupted))).Select(r => r.Step).ToList();
        Assert.Equal(Enumerable.Range(resumedFrom + 1, 12 - resumedFrom), steps.Where(s => s > resumedFrom));
        Assert.Contains(steps, s => s <= resumedFrom);
    }

    [Fact]
    public async Task ACorruptCheckpointIsDetectedAndNeverLoaded()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(6, "-corrupt"));
        var whole = (await CreateAsync(client, Job(file, seed: 3))).GetProperty("id").GetString()!;
        await factory.RunJobAsync(whole);

        var broken = (await CreateAsync(client, Job(file, seed: 3))).GetProperty("id").GetString()!;
        var jobGuid = Guid.ParseExact(broken["ftjob-".Length..], "N");
        using (var stop = new CancellationTokenSource())
        {
            var run = factory.RunJobAsync(broken, stop.Token);
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (!await DbAsync(db => db.FineTuneCheckpoints.IgnoreQueryFilters().AnyAsync(c => c.JobId == jobGuid)))
            {
                if (run.IsCompleted) await run; // ended before its first checkpoint row was seen: a failure surfaces here
                Assert.True(DateTime.UtcNow < deadline, "no checkpoint recorded within 120 s");
                await Task.Delay(20);
            }
            await stop.CancelAsync();
            if (!run.IsCompletedSuccessfully) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run); // a run that finished first is fine
        }
        // Flip a byte of every checkpoint's optimizer state, in the local copy and in the blob store.
        var checkpoints = await DbAsync(db => db.FineTuneCheckpoints.IgnoreQueryFilters().Where(c => c.JobId == jobGuid).ToListAsync());
        Assert.NotEmpty(checkpoints);
        foreach (var c in checkpoints)
        {
            var local = Path.Combine(factory.CheckpointRoot, jobGuid.ToString("N"), $"ckpt-step-{c.Step:D8}", "training_state.bin");
            Assert.True(File.Exists(local), local);
            Flip(local);
            Flip(Path.Combine(factory.BlobRoot, c.BlobSha256[..2], c.BlobSha256));
        }
        await factory.RunJobAsync(broken);
        var events = await EventsAsync(client, broken);
        Assert.Contains(events, e => e.GetProperty("kind").GetString() == "checkpoint_corrupt");
        var started = events.Where(e => e.GetProperty("kind").GetString() == "started").ToList();
        Assert.Equal(JsonValueKind.Null, started[^1].GetProperty("data").GetProperty("resumed_from_step").ValueKind); // started over
        Assert.Equal("succeeded", (await JobAsync(client, broken)).GetProperty("status").GetString());
        Assert.Equal(await AdapterHashAsync(whole), await AdapterHashAsync(broken));
    }

    private static void Flip(string path)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length - 5] ^= 0x40;
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public async Task ASecondRunWaitsWhileTheLeaseIsHeld()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(2, "-lease"));
        var id = (await CreateAsync(client, Job(file, epochs: 1))).GetProperty("id").GetString()!;
        var jobGuid = Guid.ParseExact(id["ftjob-".Length..], "N");
        var until = DateTimeOffset.UtcNow.AddSeconds(3);
        await DbAsync(db => db.FineTuneJobs.IgnoreQueryFilters().Where(j => j.Id == jobGuid)
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.LeaseOwner, "another-node").SetProperty(j => j.LeaseExpiresAt, until)));
        var run = factory.RunJobAsync(id);
        await Task.Delay(1500);
        Assert.False(run.IsCompleted);
        Assert.Equal("queued", (await RowAsync(id)).Status);
        await run;
        Assert.True(DateTimeOffset.UtcNow >= until);
        Assert.Equal("succeeded", (await RowAsync(id)).Status);
    }

    [Fact]
    public async Task PauseResumeAndCancelReachTheRunningJob()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(20, "-control"));
        var id = (await CreateAsync(client, Job(file, epochs: 50))).GetProperty("id").GetString()!;
        var run = factory.RunJobAsync(id);
        while ((await RowAsync(id)).Step < 2) { Assert.False(run.IsCompleted, "the run ended early"); await Task.Delay(20); }

        var paused = JsonDocument.Parse(await (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/pause", null)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("paused", paused.GetProperty("status").GetString());
        int step = (await RowAsync(id)).Step;
        await Task.Delay(600);
        Assert.Equal(step, (await RowAsync(id)).Step);

        var resumed = JsonDocument.Parse(await (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/resume", null)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("running", resumed.GetProperty("status").GetString());
        while ((await RowAsync(id)).Step <= step + 2) await Task.Delay(20);

        var cancelled = JsonDocument.Parse(await (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        await run;
        var kinds = (await EventsAsync(client, id)).Select(e => e.GetProperty("kind").GetString()).ToList();
        Assert.Contains("paused", kinds);
        Assert.Contains("resumed", kinds);
        Assert.Equal("cancelled", kinds[^1]);
        Assert.Null((await RowAsync(id)).FineTunedModel);
        // Create, pause, resume and cancel were each audited, as the key that asked for them.
        var tenantId = (await RowAsync(id)).TenantId;
        var audit = await DbAsync(db => db.AuditEntries.AsNoTracking().Where(e => e.TenantId == tenantId && e.TargetId == id).OrderBy(e => e.Id).ToListAsync());
        Assert.Equal(["fine_tune.created", "fine_tune.paused", "fine_tune.resumed", "fine_tune.cancelled"], audit.Select(e => e.Action));
        Assert.All(audit, e => { Assert.Equal("api_key", e.ActorKind); Assert.Equal("fine_tuning_job", e.TargetKind); });

        // A cancelled run that trained keeps its metrics as its result file.
        var csv = await ResultCsvAsync(client, await JobAsync(client, id));
        Assert.True(csv.Count > step, $"{csv.Count} rows");
        Assert.Equal(Enumerable.Range(1, csv.Count), csv.Select(r => r.Step));
    }
}
