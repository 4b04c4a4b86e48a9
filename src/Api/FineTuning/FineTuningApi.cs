using System.Security.Claims;
using System.Text.Json;
using Loom.Api.Auth;
using Loom.Api.Errors;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.FineTuning;

/// <summary>/v1/fine_tuning/jobs: OpenAI's fine-tuning API (create, list, retrieve, cancel, events, checkpoints) plus
/// pause and resume. Every endpoint needs the manage scope; every lookup is the caller's tenant's.</summary>
public static class FineTuningApi
{
    public const int MaxLimit = 100;
    /// <summary>How long cancel, pause and resume wait for the run to carry them out before answering.</summary>
    private static readonly TimeSpan ControlWait = TimeSpan.FromSeconds(5);

    public static RouteGroupBuilder MapFineTuning(this RouteGroupBuilder v1)
    {
        var jobs = v1.MapGroup("/fine_tuning/jobs");
        jobs.MapPost("", Create).WithName("CreateFineTuningJob").RequireScope(ApiKeyScopes.Manage);
        jobs.MapGet("", List).WithName("ListFineTuningJobs").RequireScope(ApiKeyScopes.Manage);
        jobs.MapGet("/{id}", Get).WithName("RetrieveFineTuningJob").RequireScope(ApiKeyScopes.Manage);
        jobs.MapPost("/{id}/cancel", Cancel).WithName("CancelFineTuningJob").RequireScope(ApiKeyScopes.Manage);
        jobs.MapPost("/{id}/pause", Pause).WithName("PauseFineTuningJob").RequireScope(ApiKeyScopes.Manage);
        jobs.MapPost("/{id}/resume", Resume).WithName("ResumeFineTuningJob").RequireScope(ApiKeyScopes.Manage);
        jobs.MapGet("/{id}/events", Events).WithName("ListFineTuningEvents").RequireScope(ApiKeyScopes.Manage);
        jobs.MapGet("/{id}/checkpoints", Checkpoints).WithName("ListFineTuningCheckpoints").RequireScope(ApiKeyScopes.Manage);
        return v1;
    }

    private static async Task<IResult> Create(HttpRequest request, ClaimsPrincipal user, FineTuneService service, CancellationToken ct)
    {
        JsonElement body;
        try
        {
            using var doc = await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = 16 }, ct);
            body = doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return ApiErrors.BadRequest("The request body is not valid JSON.");
        }
        try
        {
            var job = await service.CreateAsync(user.TenantId(), CreateFineTuneRequest.Parse(body), ct);
            return Results.Json(FineTuneJobObject.From(job));
        }
        catch (ApiRequestException e)
        {
            return e.ToResult();
        }
    }

    private static async Task<IResult> List(string? after, int? limit, FineTuneService service, CancellationToken ct) =>
        await Guarded(async () =>
        {
            var (rows, more) = await service.ListAsync(after, Limit(limit), ct);
            var data = rows.Select(FineTuneJobObject.From).ToList();
            return Results.Json(new FineTunePage<FineTuneJobObject>("list", data, more, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id));
        });

    private static async Task<IResult> Get(string id, FineTuneService service, CancellationToken ct) =>
        await service.FindAsync(id, ct) is { } job ? Results.Json(FineTuneJobObject.From(job)) : NotFound(id);

    private static Task<IResult> Cancel(string id, FineTuneService service, CancellationToken ct) =>
        Control(id, service, (s, j) => s.CancelAsync(j, ControlWait, ct), ct);

    private static Task<IResult> Pause(string id, FineTuneService service, CancellationToken ct) =>
        Control(id, service, (s, j) => s.PauseAsync(j, ControlWait, ct), ct);

    private static Task<IResult> Resume(string id, FineTuneService service, CancellationToken ct) =>
        Control(id, service, (s, j) => s.ResumeAsync(j, ControlWait, ct), ct);

    private static async Task<IResult> Control(string id, FineTuneService service, Func<FineTuneService, Data.Entities.FineTuneJob, Task<Data.Entities.FineTuneJob>> action, CancellationToken ct)
    {
        if (await service.FindAsync(id, ct) is not { } job) return NotFound(id);
        return await Guarded(async () => Results.Json(FineTuneJobObject.From(await action(service, job))));
    }

    private static async Task<IResult> Events(string id, string? after, int? limit, FineTuneService service, CancellationToken ct)
    {
        if (await service.FindAsync(id, ct) is not { } job) return NotFound(id);
        return await Guarded(async () =>
        {
            var (rows, more) = await service.EventsAsync(job, after, Limit(limit), ct);
            var data = rows.Select(e => FineTuneEventObject.From(job.Id, e)).ToList();
            return Results.Json(new FineTunePage<FineTuneEventObject>("list", data, more, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id));
        });
    }

    private static async Task<IResult> Checkpoints(string id, string? after, int? limit, FineTuneService service, CancellationToken ct)
    {
        if (await service.FindAsync(id, ct) is not { } job) return NotFound(id);
        return await Guarded(async () =>
        {
            var (rows, more) = await service.CheckpointsAsync(job, after, Limit(limit), ct);
            var model = await service.ModelNameAsync(job, ct);
            var data = rows.Select(c => new FineTuneCheckpointObject(FineTuneIds.Checkpoint(c.Id), "fine_tuning.job.checkpoint", c.CreatedAt.ToUnixTimeSeconds(),
                FineTuneIds.CheckpointModelName(model, c.Step), FineTuneIds.Job(job.Id), c.Step,
                new FineTuneCheckpointMetrics(c.Step, c.TrainLoss, c.ValidationLoss, c.TrainedTokens))).ToList();
            return Results.Json(new FineTunePage<FineTuneCheckpointObject>("list", data, more, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id));
        });
    }

    private static int Limit(int? limit) => limit switch
    {
        null => 20,
        < 1 or > MaxLimit => throw ApiRequestException.BadRequest($"'limit' must be between 1 and {MaxLimit}.", "limit"),
        _ => limit.Value,
    };

    private static async Task<IResult> Guarded(Func<Task<IResult>> work)
    {
        try { return await work(); }
        catch (ApiRequestException e) { return e.ToResult(); }
    }

    private static IResult NotFound(string id) => ApiErrors.NotFound($"No fine-tuning job '{id}'.", "id", "fine_tuning_job_not_found");
}
