using System.Globalization;
using System.Threading.Channels;
using Hangfire;
using Loom.Api.Adapters;
using Loom.Api.FineTuning;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Training;
using Loom.Jobs.Events;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.FineTuning;

/// <summary>
/// The background run of one fine-tuning job (a Hangfire job; it may run again after a crash, a retry or a restart).
/// It runs on a node whose engine serves the job's base model (the job is on that model's queue; one that reached
/// another node is moved there). It takes the job's lease (so two runs never train the same job), tokenizes the files,
/// submits the run to this node's engine (resuming from the newest checkpoint that verifies), follows its progress (events, row updates,
/// pause / resume / cancel requests), persists a checkpoint every N steps in the background, and at the end registers
/// the adapter as the job's fine-tuned model.
/// </summary>
[AutomaticRetry(Attempts = 3)]
public sealed class FineTuneJobRunner(
    IServiceScopeFactory scopes, IServiceProvider services, IBlobStore blobs, IJobEventPublisher events, IFineTuneScheduler scheduler, EngineAdapters engineAdapters,
    IOptions<FineTuningOptions> options, TimeProvider clock, ILogger<FineTuneJobRunner> logger)
{
    private FineTuningOptions O => options.Value;
    private readonly string _owner = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";
    /// <summary>Every step this run trained, for the result file.</summary>
    private readonly List<StepMetrics> _metrics = [];
    /// <summary>The step this run resumed from (steps up to it come from earlier runs' metrics events).</summary>
    private int _resumedFrom;

    public async Task RunAsync(Guid jobId, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var job = await db.FineTuneJobs.IgnoreQueryFilters().AsNoTracking().SingleOrDefaultAsync(j => j.Id == jobId, ct);
        if (job is null || FineTuneStatus.IsFinal(job.Status)) return;
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = job.TenantId;
        var baseName = await db.BaseModels.AsNoTracking().Where(m => m.Id == job.BaseModelId).Select(m => m.Name).SingleAsync(ct);
        if (!ServesHere(baseName))
        {
            // Queued before fine-tunes had a queue per base model, or moved here by hand: hand it to its model's queue,
            // where it waits (queued) until a node serving the model takes it.
            logger.LogInformation("Fine-tuning job {Job}: '{Model}' is not served here; moved to queue {Queue}", FineTuneIds.Job(job.Id), baseName, FineTuneQueues.For(baseName));
            scheduler.Enqueue(job.Id, baseName);
            return;
        }
        if (!await TakeLeaseAsync(db, job, ct)) return;

        using var leaseLost = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, leaseLost.Token);
        using var stopControl = new CancellationTokenSource();
        var control = new RunControl();
        var controlLoop = Task.Run(() => ControlLoopAsync(job, control, leaseLost, stopControl.Token), CancellationToken.None);
        try
        {
            await TrainAsync(db, job, control, linked.Token);
        }
        finally
        {
            await stopControl.CancelAsync();
            await controlLoop;
            await db.FineTuneJobs.Where(j => j.Id == job.Id && j.LeaseOwner == _owner)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.LeaseOwner, (string?)null).SetProperty(j => j.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None);
        }
    }

    /// <summary>Waits until the lease is free (its holder gone or done) and a running slot of the tenant is free, then takes it.
    /// False when the job ended meanwhile.</summary>
    private async Task<bool> TakeLeaseAsync(PlatformDbContext db, FineTuneJob job, CancellationToken ct)
    {
        while (true)
        {
            var now = clock.GetUtcNow();
            int running = await db.FineTuneJobs.CountAsync(j => j.Id != job.Id && (j.Status == FineTuneStatus.Running || j.Status == FineTuneStatus.Paused), ct);
            if (running < O.MaxRunningJobsPerTenant)
            {
                int taken = await db.FineTuneJobs
                    .Where(j => j.Id == job.Id && j.Status != FineTuneStatus.Succeeded && j.Status != FineTuneStatus.Failed && j.Status != FineTuneStatus.Cancelled
                                && (j.LeaseExpiresAt == null || j.LeaseExpiresAt < now))
                    .ExecuteUpdateAsync(s => s.SetProperty(j => j.LeaseOwner, _owner).SetProperty(j => j.LeaseExpiresAt, now + O.LeaseDuration), ct);
                if (taken == 1) return true;
            }
            var status = await db.FineTuneJobs.AsNoTracking().Where(j => j.Id == job.Id).Select(j => j.Status).SingleAsync(ct);
            if (FineTuneStatus.IsFinal(status)) return false;
            await Task.Delay(O.ControlPollInterval * 4, ct);
        }
    }

    private async Task TrainAsync(PlatformDbContext db, FineTuneJob job, RunControl control, CancellationToken ct)
    {
        string key = FineTuneIds.Job(job.Id);
        if (await RequestedActionAsync(db, job, ct) == "cancel")
        {
            await FinishAsync(db, job, FineTuneStatus.Cancelled, new FineTuneEvent("cancelled", "The job was cancelled."), ct);
            return;
        }
        var baseModel = await db.BaseModels.AsNoTracking().SingleAsync(m => m.Id == job.BaseModelId, ct);
        // ServesHere: an engine of this node serves the job's base model (the first one or another of Inference:Models).
        var engine = TrainingEngines.Find(services, baseModel.Name) ?? throw new InvalidOperationException($"no engine here trains '{baseModel.Name}'");
        var trainer = (ITrainingEngine)engine;
        if (engine.Model.Tokenizer is not { } tokenizer)
        {
            await FailAsync(db, job, "model_has_no_tokenizer", $"The base model '{baseModel.Name}' has no tokenizer, so it cannot be fine-tuned on text.", "model", ct);
            return;
        }
        var tenantName = await db.Tenants.AsNoTracking().Where(t => t.Id == job.TenantId).Select(t => t.Name).SingleAsync(ct);
        string modelName = FineTuneIds.ModelName(baseModel.Name, tenantName, job.Suffix, job.Id);

        // Files: tokenized with the served model's tokenizer; the first bad line is named.
        var limits = new JsonlLimits(engine.Model.MaxContext);
        List<TrainingExample> training;
        List<TrainingExample>? validation = null;
        try
        {
            training = await ReadExamplesAsync(db, job.TrainingFileId, "training_file", tokenizer, limits, ct);
            if (job.ValidationFileId is { } v) validation = await ReadExamplesAsync(db, v, "validation_file", tokenizer, limits, ct);
        }
        catch (BadFileException e)
        {
            await FailAsync(db, job, e.Code, e.Message, e.Param, ct);
            return;
        }
        if (job.Status == FineTuneStatus.ValidatingFiles)
        {
            await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, FineTuneStatus.Queued), ct);
            await events.PublishAsync(job.TenantId, key, "validated", new FineTuneEvent("validated",
                $"Files validated: {training.Count} training example(s){(validation is null ? "" : $", {validation.Count} validation example(s)")}.",
                Data: new Dictionary<string, object?> { ["training_examples"] = training.Count, ["validation_examples"] = validation?.Count }).Payload, ct);
        }

        string root = Path.Combine(Path.GetFullPath(O.CheckpointDirectory), job.Id.ToString("N"));
        var hp = new TrainingHyperparameters
        {
            Epochs = job.Epochs, MicroBatchSize = job.BatchSize, LearningRate = Math.Min(1, O.BaseLearningRate * job.LearningRateMultiplier),
            Rank = job.Rank, Alpha = job.Alpha, Seed = (ulong)job.Seed,
            TargetModules = job.TargetModules.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(n => LoraTargets.TryParse(n, out var t) ? t : throw new InvalidDataException($"target '{n}'")).ToList(),
            ValidationEvery = validation is null ? 0 : O.CheckpointEverySteps,
        };
        var resume = await LatestCheckpointAsync(db, job, root, ct);
        string? initialFolder = null;
        if (resume is null && job.InitialAdapterId is { } initialId)
        {
            var initial = await db.Adapters.AsNoTracking().SingleOrDefaultAsync(a => a.Id == initialId, ct);
            if (initial is null)
            {
                await FailAsync(db, job, "model_not_found", $"The adapter '{job.Model}' to continue from no longer exists.", "model", ct);
                return;
            }
            initialFolder = Path.Combine(root, "initial");
            if (Directory.Exists(initialFolder)) Directory.Delete(initialFolder, recursive: true);
            await AdapterBlob.ExtractAsync(blobs, initial.BlobSha256, initialFolder, ct);
        }
        string output = Path.Combine(root, "final");
        // The engine checkpoints every N steps and hands each snapshot to the writer; it completes at most CheckpointLagSteps
        // (default 0) steps past a checkpoint whose write is still going (back-pressure: the next update waits), so a crash
        // loses at most CheckpointEverySteps + CheckpointLagSteps completed steps: one interval by default.
        var writer = new CheckpointWriter(scopes, blobs, events, engineAdapters, options, clock, logger, job, root, baseModel.Name, modelName);
        var request = new TrainingRequest
        {
            Examples = training, Validation = validation, Hyperparameters = hp, ResumeFrom = resume, InitialAdapterFolder = initialFolder,
            OutputFolder = output, BaseModelName = baseModel.Name, TenantId = job.TenantId.ToString("N"),
            Checkpoints = new CheckpointSchedule(O.CheckpointEverySteps, O.CheckpointLagSteps ?? 0, writer.Persist),
        };
        ITrainingRun run;
        try
        {
            run = trainer.SubmitTraining(request);
        }
        catch (ArgumentException e) when (resume is not null)
        {
            logger.LogWarning(e, "Fine-tuning job {Job}: checkpoint at step {Step} does not fit the run; starting over", key, resume.Step);
            await events.PublishAsync(job.TenantId, key, "checkpoint_rejected", new FineTuneEvent("checkpoint_rejected",
                $"The checkpoint at step {resume.Step} does not fit this run ({e.Message}); training starts over.", "warn").Payload, ct);
            run = trainer.SubmitTraining(request with { ResumeFrom = null });
            resume = null;
        }
        catch (ArgumentException e)
        {
            await FailAsync(db, job, "invalid_hyperparameters", e.Message, "hyperparameters", ct);
            return;
        }
        control.Run = run;
        writer.Run = run;
        // Read progress from now on (the first move registers the reader at once), so the result file misses no step.
        await using var progress = run.ReadProgressAsync(ct).GetAsyncEnumerator(ct);
        var firstProgress = progress.MoveNextAsync();
        var startedAt = clock.GetUtcNow();
        await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, FineTuneStatus.Running).SetProperty(j => j.StartedAt, j => j.StartedAt ?? startedAt)
            .SetProperty(j => j.TotalSteps, run.Latest.TotalSteps), ct);
        await events.PublishAsync(job.TenantId, key, "started", new FineTuneEvent("started", resume is null
            ? $"Fine-tuning started: {run.Latest.TotalSteps} steps."
            : $"Fine-tuning resumed from the checkpoint at step {resume.Step} of {run.Latest.TotalSteps}.",
            Data: new Dictionary<string, object?> { ["total_steps"] = run.Latest.TotalSteps, ["resumed_from_step"] = resume?.Step }).Payload, ct);

        _resumedFrom = resume?.Step ?? 0;
        var writing = writer.RunAsync(CancellationToken.None);
        try
        {
            await FollowAsync(db, job, progress, firstProgress, resume?.Step ?? 0, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            run.Cancel(); // the host stops or another node took the job over: leave it to the next run
        }
        TrainingResult? result = null;
        Exception? error = null;
        try { result = await run.Completion; }
        catch (Exception e) { error = e; }
        writer.Complete();
        await writing;

        if (result is not null)
        {
            await SucceedAsync(db, job, result, baseModel, modelName, ct);
            return;
        }
        if (error is OperationCanceledException)
        {
            if (ct.IsCancellationRequested) ct.ThrowIfCancellationRequested();
            await FinishAsync(db, job, FineTuneStatus.Cancelled, new FineTuneEvent("cancelled", $"The job was cancelled at step {run.Latest.Step}."), CancellationToken.None);
            return;
        }
        logger.LogError(error, "Fine-tuning job {Job} failed", key);
        await FailAsync(db, job, "training_failed", $"Training failed at step {run.Latest.Step}: {error!.Message}", null, CancellationToken.None);
    }

    /// <summary>Reads progress until the run ends: status changes, metrics every N steps, checkpoints every N steps.</summary>
    private async Task FollowAsync(PlatformDbContext db, FineTuneJob job, IAsyncEnumerator<TrainingProgress> progress,
        ValueTask<bool> firstProgress, int startStep, CancellationToken ct)
    {
        string key = FineTuneIds.Job(job.Id);
        int reported = startStep;
        bool paused = false;
        // A fast reader records every step's metrics without waiting for the database; this loop writes rows and events
        // at its own pace.
        var feed = Channel.CreateUnbounded<TrainingProgress>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var pump = PumpAsync(progress, firstProgress, startStep, feed.Writer);
        await foreach (var p in feed.Reader.ReadAllAsync(ct))
        {
            if (p.State == TrainingRunState.Paused && !paused)
            {
                paused = true;
                await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, FineTuneStatus.Paused), ct);
                await events.PublishAsync(job.TenantId, key, "paused", new FineTuneEvent("paused", $"Paused at step {p.Step}.").Payload, ct);
            }
            else if (p.State == TrainingRunState.Running && paused)
            {
                paused = false;
                await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, FineTuneStatus.Running), ct);
                await events.PublishAsync(job.TenantId, key, "resumed", new FineTuneEvent("resumed", $"Resumed at step {p.Step}.").Payload, ct);
            }
            if (p.Step > reported && (p.Step % O.MetricsEverySteps == 0 || p.Step == p.TotalSteps))
            {
                reported = p.Step;
                DateTimeOffset? finish = p.EstimatedRemaining is { } rem ? clock.GetUtcNow() + rem : null;
                await UpdateAsync(db, job, s => s.SetProperty(j => j.Step, p.Step).SetProperty(j => j.TrainedTokens, p.TrainedTokens)
                    .SetProperty(j => j.EstimatedFinish, finish), ct);
                await events.PublishAsync(job.TenantId, key, FineTuneEvent.Metrics, new FineTuneEvent(FineTuneEvent.Metrics,
                    string.Create(CultureInfo.InvariantCulture, $"Step {p.Step}/{p.TotalSteps}: training loss={p.TrainLoss:F4}{(p.ValidationLoss is { } vl ? $", validation loss={vl:F4}" : "")}"),
                    Data: new Dictionary<string, object?>
                    {
                        ["step"] = p.Step, ["total_steps"] = p.TotalSteps, ["epoch"] = p.Epoch, ["train_loss"] = Finite(p.TrainLoss), ["valid_loss"] = p.ValidationLoss,
                        ["learning_rate"] = p.LearningRate, ["tokens_per_second"] = p.TokensPerSecond, ["trained_tokens"] = p.TrainedTokens,
                    }).Payload, ct);
            }

        }
    }

    /// <summary>Whether an engine of this process serves <paramref name="baseModelName"/> and trains.</summary>
    private bool ServesHere(string baseModelName) => TrainingEngines.Find(services, baseModelName) is not null;

    /// <summary>Reads the run's progress as it comes: records each step's metrics and forwards each event to
    /// <paramref name="feed"/>.</summary>
    private async Task PumpAsync(IAsyncEnumerator<TrainingProgress> progress, ValueTask<bool> firstProgress, int startStep,
        ChannelWriter<TrainingProgress> feed)
    {
        try
        {
            for (bool more = await firstProgress; more; more = await progress.MoveNextAsync())
            {
                var p = progress.Current;
                if (p.Step > startStep && (_metrics.Count == 0 || p.Step > _metrics[^1].Step))
                    _metrics.Add(new StepMetrics(p.Step, p.TrainLoss, p.ValidationLoss, p.LearningRate));
                feed.TryWrite(p);
            }
            feed.TryComplete();
        }
        catch (Exception e)
        {
            feed.TryComplete(e);
        }
    }

    private static double? Finite(double d) => double.IsFinite(d) ? d : null;

    /// <summary>The newest checkpoint of the job that verifies against its manifest (the local copy, else the blob);
    /// corrupt ones are reported and skipped.</summary>
    private async Task<TrainingSnapshot?> LatestCheckpointAsync(PlatformDbContext db, FineTuneJob job, string root, CancellationToken ct)
    {
        var rows = await db.FineTuneCheckpoints.AsNoTracking().Where(c => c.JobId == job.Id).OrderByDescending(c => c.Step).ToListAsync(ct);
        foreach (var row in rows)
        {
            string folder = Path.Combine(root, CheckpointFiles.FolderName(row.Step));
            try
            {
                if (Directory.Exists(folder))
                {
                    try { return CheckpointFiles.Load(folder); }
                    catch (Exception e) when (e is InvalidDataException or IOException)
                    {
                        logger.LogWarning("Local checkpoint {Folder} is not usable ({Problem}); reading the stored copy", folder, e.Message);
                        Directory.Delete(folder, recursive: true);
                    }
                }
                string incoming = Path.Combine(root, $".incoming-{Guid.NewGuid():N}");
                try
                {
                    await CheckpointFiles.ExtractAsync(blobs, row.BlobSha256, incoming, ct);
                    var snapshot = CheckpointFiles.Load(incoming);
                    Directory.Move(incoming, folder);
                    return snapshot;
                }
                finally
                {
                    if (Directory.Exists(incoming)) Directory.Delete(incoming, recursive: true);
                }
            }
            catch (Exception e) when (e is InvalidDataException or IOException or FileNotFoundException)
            {
                logger.LogWarning(e, "Checkpoint at step {Step} of {Job} is corrupt; trying an older one", row.Step, FineTuneIds.Job(job.Id));
                await events.PublishAsync(job.TenantId, FineTuneIds.Job(job.Id), "checkpoint_corrupt", new FineTuneEvent("checkpoint_corrupt",
                    $"The checkpoint at step {row.Step} is corrupt ({e.Message}) and was not loaded.", "warn").Payload, ct);
            }
        }
        return null;
    }

    private async Task<List<TrainingExample>> ReadExamplesAsync(PlatformDbContext db, Guid fileId, string param, Inference.Tokenization.ITokenizer tokenizer,
        JsonlLimits limits, CancellationToken ct)
    {
        var file = await db.Files.AsNoTracking().SingleOrDefaultAsync(f => f.Id == fileId, ct)
                   ?? throw new BadFileException("file_not_found", $"The {param.Replace('_', ' ')} was deleted before the job ran.", param);
        await using var stream = blobs.OpenRead(file.BlobSha256);
        using var reader = new StreamReader(stream);
        try { return JsonlExamples.Read(reader, tokenizer, limits); }
        catch (JsonlFormatException e)
        {
            throw new BadFileException(param == "training_file" ? "invalid_training_file" : "invalid_validation_file",
                $"Invalid {param.Replace('_', ' ')}: line {e.Line}: {e.Problem}", param);
        }
    }

    private async Task SucceedAsync(PlatformDbContext db, FineTuneJob job, TrainingResult result, BaseModel baseModel, string modelName, CancellationToken ct)
    {
        string configPath = Path.Combine(result.AdapterFolder, AdapterFileNames.Config);
        var config = PeftAdapterConfig.Parse(configPath, await File.ReadAllTextAsync(configPath, ct), TrainingHyperparameters.MaxRank);
        var blob = await AdapterBlob.StoreAsync(blobs, result.AdapterFolder, ct);
        var now = clock.GetUtcNow();
        var adapter = new Adapter
        {
            Id = Guid.NewGuid(), TenantId = job.TenantId, Name = modelName, BaseModelId = baseModel.Id, Rank = config.Rank, Alpha = config.Alpha,
            TargetModules = string.Join(",", config.Targets.Select(LoraTargets.Name)), BlobSha256 = blob.Sha256, SizeBytes = blob.Length, CreatedAt = now,
        };
        var metrics = await AllMetricsAsync(db, job, ct);
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            db.Adapters.Add(adapter);
            var resultFile = await ResultFiles.AddAsync(db, blobs, job.TenantId, metrics, now, ct);
            await db.SaveChangesAsync(ct);
            // A run that lost its lease records nothing (its adapter and result file roll back with it).
            if (await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, FineTuneStatus.Succeeded).SetProperty(j => j.FinishedAt, now)
                .SetProperty(j => j.ResultFileId, resultFile == null ? null : resultFile.Id)
                .SetProperty(j => j.FineTunedModel, modelName).SetProperty(j => j.ResultAdapterId, adapter.Id)
                .SetProperty(j => j.TrainedTokens, result.TrainedTokens).SetProperty(j => j.Step, result.Steps).SetProperty(j => j.EstimatedFinish, (DateTimeOffset?)null), ct) == 0) return;
            await events.PublishAsync(db, job.TenantId, FineTuneIds.Job(job.Id), "succeeded", new FineTuneEvent("succeeded",
                $"The job has successfully completed: {modelName}.", Data: new Dictionary<string, object?>
                {
                    ["fine_tuned_model"] = modelName, ["steps"] = result.Steps, ["trained_tokens"] = result.TrainedTokens,
                    ["train_loss"] = Finite(result.FinalTrainLoss), ["valid_loss"] = result.FinalValidationLoss,
                    // how long this run's loop stood still for its checkpoints (copies and back-pressure waits)
                    ["checkpoint_stall_ms"] = result.CheckpointStall.TotalMilliseconds,
                }).Payload, ct);
            await tx.CommitAsync(ct);
        }
        // Served at once on this node; other nodes register it on first use.
        await engineAdapters.EnsureRegisteredAsync(adapter, ct);
    }

    private Task FailAsync(PlatformDbContext db, FineTuneJob job, string code, string message, string? param, CancellationToken ct)
    {
        if (message.Length > 2000) message = message[..2000];
        return FinishAsync(db, job, FineTuneStatus.Failed, new FineTuneEvent("failed", message, "error",
            new Dictionary<string, object?> { ["code"] = code, ["param"] = param }), ct, (code, message, param));
    }

    private async Task FinishAsync(PlatformDbContext db, FineTuneJob job, string status, FineTuneEvent e, CancellationToken ct,
        (string Code, string Message, string? Param)? error = null)
    {
        var now = clock.GetUtcNow();
        // A failed or cancelled run that trained keeps its metrics too.
        var metrics = await AllMetricsAsync(db, job, ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var resultFile = await ResultFiles.AddAsync(db, blobs, job.TenantId, metrics, now, ct);
        if (resultFile is not null) await db.SaveChangesAsync(ct);
        if (await UpdateAsync(db, job, s => s.SetProperty(j => j.Status, status).SetProperty(j => j.FinishedAt, now).SetProperty(j => j.EstimatedFinish, (DateTimeOffset?)null)
            .SetProperty(j => j.ResultFileId, resultFile == null ? null : resultFile.Id)
            .SetProperty(j => j.ErrorCode, error?.Code).SetProperty(j => j.ErrorMessage, error?.Message).SetProperty(j => j.ErrorParam, error?.Param), ct) == 0)
            return; // the lease was lost: another run owns the job (the result file rolls back)
        await events.PublishAsync(db, job.TenantId, FineTuneIds.Job(job.Id), e.Kind, e.Payload, ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>Steps of earlier runs (from the metrics events, up to where this run resumed) and of this run.</summary>
    private async Task<List<StepMetrics>> AllMetricsAsync(PlatformDbContext db, FineTuneJob job, CancellationToken ct)
    {
        var rows = _resumedFrom > 0 ? await ResultFiles.FromEventsAsync(db, job.Id, _resumedFrom, ct) : [];
        rows.AddRange(_metrics);
        return rows;
    }

    /// <summary>Updates the job's row while this run holds its lease (a run that lost it writes nothing).</summary>
    private Task<int> UpdateAsync(PlatformDbContext db, FineTuneJob job,
        Action<Microsoft.EntityFrameworkCore.Query.UpdateSettersBuilder<FineTuneJob>> set,
        CancellationToken ct) =>
        db.FineTuneJobs.Where(j => j.Id == job.Id && j.LeaseOwner == _owner).ExecuteUpdateAsync(set, ct);

    private static Task<string?> RequestedActionAsync(PlatformDbContext db, FineTuneJob job, CancellationToken ct) =>
        db.FineTuneJobs.AsNoTracking().Where(j => j.Id == job.Id).Select(j => j.RequestedAction).SingleAsync(ct);

    /// <summary>Applies pause / resume / cancel requests to the run and renews the lease; cancels
    /// <paramref name="leaseLost"/> when another run holds the job.</summary>
    private async Task ControlLoopAsync(FineTuneJob job, RunControl control, CancellationTokenSource leaseLost, CancellationToken stop)
    {
        await using var scope = scopes.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = job.TenantId;
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var renewed = clock.GetUtcNow();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(O.ControlPollInterval, clock, stop);
                var now = clock.GetUtcNow();
                if (now - renewed >= O.LeaseDuration / 3)
                {
                    int kept = await db.FineTuneJobs.Where(j => j.Id == job.Id && j.LeaseOwner == _owner)
                        .ExecuteUpdateAsync(s => s.SetProperty(j => j.LeaseExpiresAt, now + O.LeaseDuration), stop);
                    if (kept == 0)
                    {
                        logger.LogWarning("Fine-tuning job {Job}: the lease was taken over; stopping this run", FineTuneIds.Job(job.Id));
                        control.Run?.Cancel();
                        await leaseLost.CancelAsync();
                        return;
                    }
                    renewed = now;
                }
                if (control.Run is not { } run) continue;
                var action = await RequestedActionAsync(db, job, stop);
                switch (action)
                {
                    case "cancel": run.Cancel(); break;
                    case "pause": run.Pause(); break;
                    case null when run.State == TrainingRunState.Paused: run.Resume(); break;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning(e, "Fine-tuning job {Job}: control poll failed; retrying", FineTuneIds.Job(job.Id));
            }
        }
    }

    private sealed class RunControl
    {
        public volatile ITrainingRun? Run;
    }

    private sealed class BadFileException(string code, string message, string param) : Exception(message)
    {
        public string Code { get; } = code;
        public string Param { get; } = param;
    }
}
