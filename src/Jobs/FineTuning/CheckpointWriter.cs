using System.Diagnostics;
using System.Threading.Channels;
using Loom.Api.Adapters;
using Loom.Api.FineTuning;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Inference.Formats;
using Loom.Inference.Training;
using Loom.Jobs.Events;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.FineTuning;

/// <summary>
/// Persists a job's checkpoints off the training loop: the engine hands over an in-memory snapshot (taken between two
/// optimizer steps, <see cref="Persist"/>), and this writer, on its own task, writes it as a checkpoint folder (temporary
/// name, fsync, atomic rename), stores it as a blob, records a <see cref="FineTuneCheckpoint"/> row and a "checkpoint"
/// event, then applies retention (the last K plus the best by validation loss). The task <see cref="Persist"/> returned
/// completes once the row is committed (the checkpoint is durable) or the write has failed; the engine holds the
/// training loop on it (back-pressure, <see cref="CheckpointSchedule"/>). A failed write is reported and training goes on.
/// Each kept checkpoint is also a model of the tenant, <c>&lt;fine_tuned_model&gt;:ckpt-step-&lt;n&gt;</c> (OpenAI's
/// <c>fine_tuned_model_checkpoint</c>): an adapter row over the checkpoint's adapter files, listed by /v1/models for the
/// owning tenant and served by chat/completions; retention removes it with the checkpoint.
/// </summary>
internal sealed class CheckpointWriter(
    IServiceScopeFactory scopes, IBlobStore blobs, IJobEventPublisher events, EngineAdapters engineAdapters, IOptions<FineTuningOptions> options,
    TimeProvider clock, ILogger logger, FineTuneJob job, string root, string baseModelName, string modelName)
{
    private readonly Channel<(TrainingSnapshot Snapshot, TaskCompletionSource Written)> _pending =
        Channel.CreateUnbounded<(TrainingSnapshot, TaskCompletionSource)>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>The run whose checkpoints this writes (for the step it reached when each became durable).</summary>
    public ITrainingRun? Run { get; set; }

    /// <summary>Queues <paramref name="snapshot"/> (called on the engine's loop thread: returns at once); the task completes
    /// when it is durable or its write failed.</summary>
    public Task Persist(TrainingSnapshot snapshot)
    {
        var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_pending.Writer.TryWrite((snapshot, written))) written.TrySetResult(); // the writer has stopped: nothing holds training
        return written.Task;
    }

    /// <summary>No more checkpoints; <see cref="RunAsync"/> ends once the queued ones are written.</summary>
    public void Complete() => _pending.Writer.TryComplete();

    public async Task RunAsync(CancellationToken ct)
    {
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = job.TenantId;
            var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
            await WarmUpAsync(db, ct);
            await foreach (var (snapshot, written) in _pending.Reader.ReadAllAsync(ct))
            {
                try
                {
                    await WriteAsync(db, snapshot, ct);
                    written.TrySetResult(); // durable: training may run on
                    await ApplyRetentionAsync(db, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    written.TrySetResult();
                    logger.LogError(e, "Checkpoint at step {Step} of {Job} was not written", snapshot.Step, FineTuneIds.Job(job.Id));
                    await events.PublishAsync(job.TenantId, FineTuneIds.Job(job.Id), "checkpoint_failed", new FineTuneEvent("checkpoint_failed",
                        $"The checkpoint at step {snapshot.Step} could not be written: {e.Message}", "warn").Payload, CancellationToken.None);
                }
                finally
                {
                    written.TrySetResult();
                }
            }
        }
        finally
        {
            // Whatever ends the writer, no training loop waits on it.
            _pending.Writer.TryComplete();
            while (_pending.Reader.TryRead(out var left)) left.Written.TrySetResult();
        }
    }

    private async Task WriteAsync(PlatformDbContext db, TrainingSnapshot snapshot, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        string folder = await Task.Run(() => CheckpointFiles.Write(snapshot, root, baseModelName), ct);
        double filesMs = watch.Elapsed.TotalMilliseconds;
        // The checkpoint, and the checkpoint as a servable adapter (the same two adapter files as an adapter blob), at once.
        var storing = CheckpointFiles.StoreAsync(blobs, folder, ct);
        var storingAdapter = AdapterBlob.StoreAsync(blobs, folder, ct);
        await Task.WhenAll(storing, storingAdapter);
        var (blob, adapterBlob) = (storing.Result, storingAdapter.Result);
        double blobsMs = watch.Elapsed.TotalMilliseconds - filesMs;
        string configPath = Path.Combine(folder, AdapterFileNames.Config);
        var config = PeftAdapterConfig.Parse(configPath, await File.ReadAllTextAsync(configPath, ct), TrainingHyperparameters.MaxRank);
        string checkpointModel = FineTuneIds.CheckpointModelName(modelName, snapshot.Step);
        var row = new FineTuneCheckpoint
        {
            Id = Guid.NewGuid(), TenantId = job.TenantId, JobId = job.Id, Step = snapshot.Step, TrainLoss = double.IsFinite(snapshot.LastTrainLoss) ? snapshot.LastTrainLoss : 0,
            ValidationLoss = snapshot.LastValidationLoss, TrainedTokens = snapshot.TrainedTokens, BlobSha256 = blob.Sha256, SizeBytes = blob.Length,
            CreatedAt = clock.GetUtcNow(),
        };
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            // A run before this one may have recorded the same step (it holds the same state): keep that row.
            if (!await CheckpointExistsAsync(db, snapshot.Step, ct))
            {
                db.FineTuneCheckpoints.Add(row);
                if (!await ModelExistsAsync(db, checkpointModel, ct))
                    db.Adapters.Add(new Adapter
                    {
                        Id = Guid.NewGuid(), TenantId = job.TenantId, Name = checkpointModel, BaseModelId = job.BaseModelId, Rank = config.Rank, Alpha = config.Alpha,
                        TargetModules = string.Join(",", config.Targets.Select(LoraTargets.Name)), BlobSha256 = adapterBlob.Sha256, SizeBytes = adapterBlob.Length,
                        CreatedAt = row.CreatedAt,
                    });
                await db.SaveChangesAsync(ct);
                await events.PublishAsync(db, job.TenantId, FineTuneIds.Job(job.Id), "checkpoint", new FineTuneEvent("checkpoint",
                    $"Checkpoint saved at step {snapshot.Step}: {FineTuneIds.CheckpointModelName(modelName, snapshot.Step)}.", Data: new Dictionary<string, object?>
                    {
                        ["step"] = snapshot.Step, ["bytes"] = blob.Length, ["write_ms"] = watch.Elapsed.TotalMilliseconds,
                        // where the write's time went: the checkpoint folder (files, fsyncs, manifest), the two blobs
                        ["files_ms"] = filesMs, ["blobs_ms"] = blobsMs,
                        ["stall_ms"] = snapshot.Stall.TotalMilliseconds, ["step_time_ms"] = StepTimeMs(snapshot),
                        // the step training had reached when this checkpoint became durable (back-pressure bounds it)
                        ["training_step"] = Run?.Latest.Step,
                        ["train_loss"] = row.TrainLoss, ["valid_loss"] = row.ValidationLoss,
                    }).Payload, ct);
            }
            await tx.CommitAsync(ct);
        }
        db.ChangeTracker.Clear();
        logger.LogDebug("Checkpoint at step {Step} of {Job} durable in {Ms:F0} ms (folder {Files:F0} ms, blobs {Blobs:F0} ms, rows {Rows:F0} ms)", snapshot.Step,
            FineTuneIds.Job(job.Id), watch.Elapsed.TotalMilliseconds, filesMs, blobsMs, watch.Elapsed.TotalMilliseconds - filesMs - blobsMs);
    }

    private Task<bool> CheckpointExistsAsync(PlatformDbContext db, int step, CancellationToken ct) =>
        db.FineTuneCheckpoints.AnyAsync(c => c.JobId == job.Id && c.Step == step, ct);

    private static Task<bool> ModelExistsAsync(PlatformDbContext db, string name, CancellationToken ct) => db.Adapters.AnyAsync(a => a.Name == name, ct);

    /// <summary>Runs the write path once on a one-parameter checkpoint before the first real one is due (while the run's
    /// first interval trains): the folder with its manifest, fsyncs and verification, the tar and hash of the adapter
    /// files, the two lookups and the inserts in a transaction rolled back. A cold first write (code compiled on first
    /// use, the database's first statements) took seconds on a loaded machine, and the loop waits for a checkpoint's
    /// write at the next step's update. It stops as soon as a real checkpoint is waiting (short intervals). Nothing it
    /// does is kept; a failure only leaves the first write cold.</summary>
    private async Task WarmUpAsync(PlatformDbContext db, CancellationToken ct)
    {
        string temp = Path.Combine(root, $".warm-up-{Guid.NewGuid():N}");
        try
        {
            var snapshot = new TrainingSnapshot
            {
                Fingerprint = "warm-up", Step = 0, Epoch = 0, Cursor = 0, RngState = new ulong[4], TrainedTokens = 0, LastTrainLoss = 0, Rank = 1, Alpha = 1,
                Modules = [new LoraModuleState(0, LoraTarget.QProj, 1, 1, 1, [0f], [0f], [0f], [0f], [0f], [0f])],
            };
            string folder = await Task.Run(() => CheckpointFiles.Write(snapshot, temp, baseModelName), ct);
            CheckpointFiles.Verify(folder);
            await AdapterBlob.HashFolderAsync(folder, ct);
            if (_pending.Reader.TryPeek(out _)) return;
            await using (var tx = await db.Database.BeginTransactionAsync(ct))
            {
                string name = FineTuneIds.CheckpointModelName(modelName, -1);
                await CheckpointExistsAsync(db, -1, ct);
                await ModelExistsAsync(db, name, ct);
                db.FineTuneCheckpoints.Add(new FineTuneCheckpoint
                {
                    Id = Guid.NewGuid(), TenantId = job.TenantId, JobId = job.Id, Step = -1, BlobSha256 = new string('0', 64), CreatedAt = clock.GetUtcNow(),
                });
                db.Adapters.Add(new Adapter
                {
                    Id = Guid.NewGuid(), TenantId = job.TenantId, Name = name, BaseModelId = job.BaseModelId, Rank = 1, Alpha = 1, TargetModules = "q_proj",
                    BlobSha256 = new string('0', 64), CreatedAt = clock.GetUtcNow(),
                });
                await db.SaveChangesAsync(ct);
                await tx.RollbackAsync(ct);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogDebug(e, "Warming the checkpoint write path of {Job} failed", FineTuneIds.Job(job.Id));
        }
        finally
        {
            db.ChangeTracker.Clear();
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>Mean wall time of a step over the run so far (from the snapshot's run time), for the stall's share.</summary>
    private static double? StepTimeMs(TrainingSnapshot s) => s.Step > 0 && s.Elapsed > TimeSpan.Zero ? s.Elapsed.TotalMilliseconds / s.Step : null;

    /// <summary>Keeps the newest K checkpoints and the best by validation loss; the others' rows, their models and local
    /// folders go (their blobs with the blob collection job).</summary>
    private async Task ApplyRetentionAsync(PlatformDbContext db, CancellationToken ct)
    {
        var rows = await db.FineTuneCheckpoints.Where(c => c.JobId == job.Id).OrderByDescending(c => c.Step).ToListAsync(ct);
        var keep = rows.Take(options.Value.KeepLastCheckpoints).Select(c => c.Id).ToHashSet();
        if (rows.Where(c => c.ValidationLoss is not null).MinBy(c => c.ValidationLoss) is { } best) keep.Add(best.Id);
        var drop = rows.Where(c => !keep.Contains(c.Id)).ToList();
        if (drop.Count == 0) return;
        db.FineTuneCheckpoints.RemoveRange(drop);
        var names = drop.Select(c => FineTuneIds.CheckpointModelName(modelName, c.Step)).ToList();
        var models = await db.Adapters.Where(a => names.Contains(a.Name)).ToListAsync(ct);
        db.Adapters.RemoveRange(models);
        await db.SaveChangesAsync(ct);
        // The engine forgets them; one streaming a reply right now stays loaded until evicted, but no request can name it.
        foreach (var m in models) engineAdapters.TryUnregister(m);
        foreach (var c in drop)
        {
            string folder = Path.Combine(root, CheckpointFiles.FolderName(c.Step));
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }
}
