using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Training;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Api.FineTuning;

/// <summary>A tenant's fine-tuning jobs for the API and the portal: create (files checked before the job is queued),
/// list, find, cancel, pause, resume, events and checkpoints. Every lookup goes through the tenant query filter; create,
/// cancel, pause and resume leave an audit entry saved with the change.</summary>
public sealed class FineTuneService(
    PlatformDbContext db, IBlobStore blobs, IInferenceEngine engine, IFineTuneScheduler scheduler, IOptions<FineTuningOptions> options, AuditLog audit,
    TimeProvider clock)
{
    private FineTuningOptions O => options.Value;

    public async Task<FineTuneJob> CreateAsync(Guid tenantId, CreateFineTuneRequest r, CancellationToken ct)
    {
        // The model: a base model, or one of the tenant's adapters (incl. earlier fine-tunes) to continue from.
        var baseModel = await db.BaseModels.AsNoTracking().SingleOrDefaultAsync(m => m.Name == r.Model, ct);
        Adapter? initial = null;
        if (baseModel is null)
        {
            initial = await db.Adapters.AsNoTracking().Include(a => a.BaseModel).SingleOrDefaultAsync(a => a.Name == r.Model, ct)
                      ?? throw new ApiRequestException(StatusCodes.Status404NotFound, $"The model '{r.Model}' does not exist or you do not have access to it.", "model", "model_not_found");
            baseModel = initial.BaseModel!;
        }
        var training = await FindFileAsync(r.TrainingFile, "training_file", ct);
        var validation = r.ValidationFile is null ? null : await FindFileAsync(r.ValidationFile, "validation_file", ct);
        int trainingExamples = await CheckFileAsync(training, "training_file", baseModel.Name, ct);
        int? validationExamples = validation is null ? null : await CheckFileAsync(validation, "validation_file", baseModel.Name, ct);

        var targets = r.TargetModules ?? (initial is null ? [LoraTarget.QProj, LoraTarget.VProj] : ParseTargets(initial.TargetModules));
        var job = new FineTuneJob
        {
            Id = Guid.NewGuid(), TenantId = tenantId, Model = r.Model, BaseModelId = baseModel.Id, InitialAdapterId = initial?.Id,
            TrainingFileId = training.Id, ValidationFileId = validation?.Id, Suffix = r.Suffix,
            Seed = r.Seed ?? Random.Shared.Next(0, int.MaxValue),
            Epochs = r.Epochs ?? O.AutoEpochs, BatchSize = r.BatchSize ?? 1, LearningRateMultiplier = r.LearningRateMultiplier ?? 1,
            Rank = initial?.Rank ?? r.Rank ?? O.DefaultRank, Alpha = initial?.Alpha ?? r.Alpha ?? O.DefaultAlpha,
            TargetModules = string.Join(",", targets.Select(LoraTargets.Name)),
            // The files are checked: the job waits in its base model's queue until a node serving the model runs it.
            Status = FineTuneStatus.Queued, CreatedAt = clock.GetUtcNow(),
        };

        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            // One create per tenant at a time, so two concurrent creates cannot both pass the limits.
            await db.Database.ExecuteSqlInterpolatedAsync($"SELECT pg_advisory_xact_lock(hashtextextended({"fine-tune:" + tenantId}, 0))", ct);
            var active = await db.FineTuneJobs.Where(j => j.Status != FineTuneStatus.Succeeded && j.Status != FineTuneStatus.Failed && j.Status != FineTuneStatus.Cancelled)
                .GroupBy(j => j.Status == FineTuneStatus.ValidatingFiles || j.Status == FineTuneStatus.Queued).Select(g => new { Waiting = g.Key, Count = g.Count() })
                .ToListAsync(ct);
            int waiting = active.Where(a => a.Waiting).Sum(a => a.Count), trainingNow = active.Where(a => !a.Waiting).Sum(a => a.Count);
            // Room: the free running slots plus the queue.
            if (waiting >= O.MaxQueuedJobsPerTenant + Math.Max(0, O.MaxRunningJobsPerTenant - trainingNow))
                throw new ApiRequestException(StatusCodes.Status429TooManyRequests,
                    $"You have {trainingNow} fine-tuning job(s) running and {waiting} queued, the most allowed ({O.MaxRunningJobsPerTenant} running, {O.MaxQueuedJobsPerTenant} queued). Wait for one to finish or cancel one.",
                    null, "rate_limit_exceeded", "rate_limit_exceeded");
            db.FineTuneJobs.Add(job);
            audit.Add("fine_tune.created", tenantId, AuditTarget, FineTuneIds.Job(job.Id),
                $"model={r.Model}; training_file={FileIds.Format(training.Id)}{(validation is null ? "" : $"; validation_file={FileIds.Format(validation.Id)}")}");
            await db.SaveChangesAsync(ct);
            await scheduler.PublishAsync(db, job, new FineTuneEvent("created", $"Created fine-tuning job: {FineTuneIds.Job(job.Id)}"), ct);
            await scheduler.PublishAsync(db, job, new FineTuneEvent("validated",
                $"Files validated: {trainingExamples} training example(s){(validationExamples is { } v ? $", {v} validation example(s)" : "")}.",
                Data: new Dictionary<string, object?> { ["training_examples"] = trainingExamples, ["validation_examples"] = validationExamples }), ct);
            await tx.CommitAsync(ct);
        }
        scheduler.Enqueue(job.Id, baseModel.Name);
        return job;
    }

    private static IReadOnlyList<LoraTarget> ParseTargets(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(n => LoraTargets.TryParse(n, out var t) ? t : throw new InvalidOperationException($"stored target '{n}'")).ToList();

    private async Task<FileObject> FindFileAsync(string id, string param, CancellationToken ct)
    {
        // The query filter hides other tenants' files: theirs are "not found" like a file that never existed.
        var file = FileIds.TryParse(id, out var guid) ? await db.Files.AsNoTracking().SingleOrDefaultAsync(f => f.Id == guid, ct) : null;
        if (file is null) throw new ApiRequestException(StatusCodes.Status404NotFound, $"No file '{id}'.", param, "file_not_found");
        if (file.Purpose != FileService.FineTunePurpose)
            throw ApiRequestException.BadRequest($"'{id}' was uploaded with purpose '{file.Purpose}'; fine-tuning needs '{FileService.FineTunePurpose}'.", param, "invalid_file_purpose");
        if (file.Bytes > O.MaxFileBytes)
            throw ApiRequestException.BadRequest($"'{id}' is {file.Bytes} bytes; the most a fine-tuning file may be is {O.MaxFileBytes}.", param, "file_too_large");
        return file;
    }

    /// <summary>Format per line; where this node serves the base model, also tokens per example against its context (else
    /// the node that trains checks them). Returns the number of examples.</summary>
    private async Task<int> CheckFileAsync(FileObject file, string param, string baseName, CancellationToken ct)
    {
        if (engine is not UnconfiguredInferenceEngine && engine.Model.Name == baseName && engine.Model.Tokenizer is { } tokenizer)
        {
            await using var stream = blobs.OpenRead(file.BlobSha256);
            using var reader = new StreamReader(stream);
            try { return JsonlExamples.Read(reader, tokenizer, new JsonlLimits(engine.Model.MaxContext)).Count; }
            catch (JsonlFormatException e) { throw BadFile(file, param, e.Line, e.Problem); }
        }
        await using (var stream = blobs.OpenRead(file.BlobSha256))
        {
            var result = await JsonlValidator.ValidateAsync(stream, ct);
            if (!result.Ok) throw BadFile(file, param, result.BadLine ?? 1, result.Problem ?? "invalid");
            return result.Lines;
        }
    }

    private static ApiRequestException BadFile(FileObject file, string param, int line, string problem) =>
        ApiRequestException.BadRequest($"Invalid {param.Replace('_', ' ')} '{FileIds.Format(file.Id)}': line {line}: {problem}", param,
            param == "training_file" ? "invalid_training_file" : "invalid_validation_file");

    /// <summary>Newest first, after the job <paramref name="after"/> (exclusive); one more than asked tells has_more.</summary>
    public async Task<(List<FineTuneJob> Jobs, bool HasMore)> ListAsync(string? after, int limit, CancellationToken ct)
    {
        var query = db.FineTuneJobs.AsNoTracking();
        if (after is not null)
        {
            var cursor = FineTuneIds.TryParseJob(after, out var id) ? await query.Where(j => j.Id == id).Select(j => new { j.CreatedAt, j.Id }).SingleOrDefaultAsync(ct) : null;
            if (cursor is null) throw ApiRequestException.BadRequest($"'after' names no fine-tuning job of yours: '{after}'.", "after");
            query = query.Where(j => j.CreatedAt < cursor.CreatedAt || j.CreatedAt == cursor.CreatedAt && j.Id.CompareTo(cursor.Id) < 0);
        }
        var rows = await query.OrderByDescending(j => j.CreatedAt).ThenByDescending(j => j.Id).Take(limit + 1).ToListAsync(ct);
        bool more = rows.Count > limit;
        if (more) rows.RemoveAt(rows.Count - 1);
        return (rows, more);
    }

    public async Task<FineTuneJob?> FindAsync(string id, CancellationToken ct) =>
        FineTuneIds.TryParseJob(id, out var guid) ? await db.FineTuneJobs.SingleOrDefaultAsync(j => j.Id == guid, ct) : null;

    /// <summary>Cancels a job: one that has not started is cancelled here; a running or paused one is asked to stop
    /// and does so within one training slice (waited for up to <paramref name="wait"/>).</summary>
    public async Task<FineTuneJob> CancelAsync(FineTuneJob job, TimeSpan wait, CancellationToken ct)
    {
        if (FineTuneStatus.IsFinal(job.Status))
            throw new ApiRequestException(StatusCodes.Status409Conflict, $"The job is already {job.Status}.", "id", "job_finished");
        var now = clock.GetUtcNow();
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            // A job no run holds is cancelled at once; otherwise its run sees the request.
            int done = await db.FineTuneJobs.Where(j => j.Id == job.Id && (j.Status == FineTuneStatus.ValidatingFiles || j.Status == FineTuneStatus.Queued)
                                                        && (j.LeaseExpiresAt == null || j.LeaseExpiresAt < now))
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, FineTuneStatus.Cancelled).SetProperty(j => j.FinishedAt, now)
                    .SetProperty(j => j.RequestedAction, "cancel"), ct);
            if (done == 1) await scheduler.PublishAsync(db, job, new FineTuneEvent("cancelled", "The job was cancelled before it started."), ct);
            else await db.FineTuneJobs.Where(j => j.Id == job.Id).ExecuteUpdateAsync(s => s.SetProperty(j => j.RequestedAction, "cancel"), ct);
            await AuditAsync("fine_tune.cancelled", job, $"status={job.Status}", ct);
            await tx.CommitAsync(ct);
        }
        return await WaitForAsync(job.Id, j => FineTuneStatus.IsFinal(j.Status), wait, ct);
    }

    public async Task<FineTuneJob> PauseAsync(FineTuneJob job, TimeSpan wait, CancellationToken ct)
    {
        if (job.Status is not (FineTuneStatus.Running or FineTuneStatus.Paused))
            throw new ApiRequestException(StatusCodes.Status409Conflict, $"Only a running job can be paused; this one is {job.Status}.", "id", "job_not_running");
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            if (await db.FineTuneJobs.Where(j => j.Id == job.Id && (j.RequestedAction == null || j.RequestedAction != "cancel"))
                    .ExecuteUpdateAsync(s => s.SetProperty(j => j.RequestedAction, "pause"), ct) == 1)
                await AuditAsync("fine_tune.paused", job, null, ct);
            await tx.CommitAsync(ct);
        }
        return await WaitForAsync(job.Id, j => j.Status != FineTuneStatus.Running, wait, ct);
    }

    public async Task<FineTuneJob> ResumeAsync(FineTuneJob job, TimeSpan wait, CancellationToken ct)
    {
        if (job.Status != FineTuneStatus.Paused && job.RequestedAction != "pause")
            throw new ApiRequestException(StatusCodes.Status409Conflict, $"Only a paused job can be resumed; this one is {job.Status}.", "id", "job_not_paused");
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            if (await db.FineTuneJobs.Where(j => j.Id == job.Id && j.RequestedAction == "pause")
                    .ExecuteUpdateAsync(s => s.SetProperty(j => j.RequestedAction, (string?)null), ct) == 1)
                await AuditAsync("fine_tune.resumed", job, null, ct);
            await tx.CommitAsync(ct);
        }
        return await WaitForAsync(job.Id, j => j.Status != FineTuneStatus.Paused, wait, ct);
    }

    private const string AuditTarget = "fine_tuning_job";

    /// <summary>Saves an audit entry for a change made with ExecuteUpdate (in the caller's transaction).</summary>
    private Task AuditAsync(string action, FineTuneJob job, string? detail, CancellationToken ct)
    {
        audit.Add(action, job.TenantId, AuditTarget, FineTuneIds.Job(job.Id), detail);
        return db.SaveChangesAsync(ct);
    }

    private async Task<FineTuneJob> WaitForAsync(Guid id, Func<FineTuneJob, bool> done, TimeSpan wait, CancellationToken ct)
    {
        var until = clock.GetUtcNow() + wait;
        while (true)
        {
            var row = await db.FineTuneJobs.AsNoTracking().SingleAsync(j => j.Id == id, ct);
            if (done(row) || clock.GetUtcNow() >= until) return row;
            await Task.Delay(100, ct);
        }
    }

    /// <summary>Newest first; <paramref name="after"/>: the id of the last event of the previous page (older ones follow).</summary>
    public async Task<(List<JobEvent> Events, bool HasMore)> EventsAsync(FineTuneJob job, string? after, int limit, CancellationToken ct)
    {
        string key = FineTuneIds.Job(job.Id);
        var query = db.JobEvents.AsNoTracking().Where(e => e.JobId == key);
        if (after is not null)
        {
            var seq = FineTuneIds.EventSeq(job.Id, after) ?? throw ApiRequestException.BadRequest($"'after' is not an event id of this job: '{after}'.", "after");
            query = query.Where(e => e.Seq < seq);
        }
        var rows = await query.OrderByDescending(e => e.Seq).Take(limit + 1).ToListAsync(ct);
        bool more = rows.Count > limit;
        if (more) rows.RemoveAt(rows.Count - 1);
        return (rows, more);
    }

    public async Task<(List<FineTuneCheckpoint> Checkpoints, bool HasMore)> CheckpointsAsync(FineTuneJob job, string? after, int limit, CancellationToken ct)
    {
        var query = db.FineTuneCheckpoints.AsNoTracking().Where(c => c.JobId == job.Id);
        if (after is not null)
        {
            var cursor = after.StartsWith("ftckpt-", StringComparison.Ordinal) && Guid.TryParseExact(after["ftckpt-".Length..], "N", out var cid)
                ? await query.Where(c => c.Id == cid).Select(c => (int?)c.Step).SingleOrDefaultAsync(ct) : null;
            if (cursor is null) throw ApiRequestException.BadRequest($"'after' is not a checkpoint of this job: '{after}'.", "after");
            query = query.Where(c => c.Step < cursor);
        }
        var rows = await query.OrderByDescending(c => c.Step).Take(limit + 1).ToListAsync(ct);
        bool more = rows.Count > limit;
        if (more) rows.RemoveAt(rows.Count - 1);
        return (rows, more);
    }

    /// <summary>The job's model name (the final one, or the one it will get) for naming its checkpoints.</summary>
    public async Task<string> ModelNameAsync(FineTuneJob job, CancellationToken ct)
    {
        if (job.FineTunedModel is { } name) return name;
        var tenant = await db.Tenants.AsNoTracking().Where(t => t.Id == job.TenantId).Select(t => t.Name).SingleAsync(ct);
        var baseName = await db.BaseModels.AsNoTracking().Where(m => m.Id == job.BaseModelId).Select(m => m.Name).SingleAsync(ct);
        return FineTuneIds.ModelName(baseName, tenant, job.Suffix, job.Id);
    }
}
