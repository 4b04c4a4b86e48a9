using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Api.Files;
using Loom.Data.Entities;

namespace Loom.Api.FineTuning;

public sealed record FineTuneHyperparameters(
    [property: JsonPropertyName("n_epochs")] int Epochs,
    [property: JsonPropertyName("batch_size")] int BatchSize,
    [property: JsonPropertyName("learning_rate_multiplier")] double LearningRateMultiplier,
    [property: JsonPropertyName("rank")] int Rank,
    [property: JsonPropertyName("alpha")] double Alpha,
    [property: JsonPropertyName("target_modules")] IReadOnlyList<string> TargetModules);

public sealed record FineTuneMethod(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("supervised")] FineTuneSupervised Supervised);

public sealed record FineTuneSupervised([property: JsonPropertyName("hyperparameters")] FineTuneHyperparameters Hyperparameters);

public sealed record FineTuneError(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("param")] string? Param);

/// <summary>OpenAI's fine_tuning.job object.</summary>
public sealed record FineTuneJobObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created_at")] long CreatedAt,
    [property: JsonPropertyName("finished_at")] long? FinishedAt,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("fine_tuned_model")] string? FineTunedModel,
    [property: JsonPropertyName("organization_id")] string OrganizationId,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("hyperparameters")] FineTuneHyperparameters Hyperparameters,
    [property: JsonPropertyName("method")] FineTuneMethod Method,
    [property: JsonPropertyName("training_file")] string TrainingFile,
    [property: JsonPropertyName("validation_file")] string? ValidationFile,
    [property: JsonPropertyName("result_files")] IReadOnlyList<string> ResultFiles,
    [property: JsonPropertyName("trained_tokens")] long? TrainedTokens,
    [property: JsonPropertyName("error")] FineTuneError? Error,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("estimated_finish")] long? EstimatedFinish,
    [property: JsonPropertyName("user_provided_suffix")] string? Suffix,
    [property: JsonPropertyName("integrations")] object? Integrations,
    [property: JsonPropertyName("metadata")] object? Metadata)
{
    public static FineTuneJobObject From(FineTuneJob j)
    {
        var hp = new FineTuneHyperparameters(j.Epochs, j.BatchSize, j.LearningRateMultiplier, j.Rank, j.Alpha,
            j.TargetModules.Split(',', StringSplitOptions.RemoveEmptyEntries));
        return new FineTuneJobObject(FineTuneIds.Job(j.Id), "fine_tuning.job", j.CreatedAt.ToUnixTimeSeconds(), j.FinishedAt?.ToUnixTimeSeconds(),
            j.Model, j.FineTunedModel, $"tenant-{j.TenantId:N}", j.Status, hp, new FineTuneMethod("supervised", new FineTuneSupervised(hp)),
            FileIds.Format(j.TrainingFileId), j.ValidationFileId is { } v ? FileIds.Format(v) : null,
            j.ResultFileId is { } r ? [FileIds.Format(r)] : [],
            j.Status == FineTuneStatus.Succeeded || j.TrainedTokens > 0 ? j.TrainedTokens : null,
            j.ErrorCode is null ? null : new FineTuneError(j.ErrorCode, j.ErrorMessage ?? "", j.ErrorParam),
            j.Seed, FineTuneStatus.IsFinal(j.Status) ? null : j.EstimatedFinish?.ToUnixTimeSeconds(), j.Suffix, null, null);
    }
}

/// <summary>OpenAI's fine_tuning.job.event object.</summary>
public sealed record FineTuneEventObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created_at")] long CreatedAt,
    [property: JsonPropertyName("level")] string Level,
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("data")] JsonElement? Data,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("seq")] long Seq)
{
    public static FineTuneEventObject From(Guid jobId, JobEvent e)
    {
        using var doc = JsonDocument.Parse(e.Payload);
        var p = doc.RootElement;
        string message = p.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : e.Kind;
        string level = p.TryGetProperty("level", out var l) && l.ValueKind == JsonValueKind.String ? l.GetString()! : "info";
        JsonElement? data = p.TryGetProperty("data", out var d) && d.ValueKind == JsonValueKind.Object ? d.Clone() : null;
        return new FineTuneEventObject(FineTuneIds.Event(jobId, e.Seq), "fine_tuning.job.event", e.CreatedAt.ToUnixTimeSeconds(), level, message,
            e.Kind == FineTuneEvent.Metrics ? "metrics" : "message", data, e.Kind, e.Seq);
    }
}

public sealed record FineTuneCheckpointMetrics(
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("train_loss")] double TrainLoss,
    [property: JsonPropertyName("valid_loss")] double? ValidLoss,
    [property: JsonPropertyName("trained_tokens")] long TrainedTokens);

/// <summary>OpenAI's fine_tuning.job.checkpoint object.</summary>
public sealed record FineTuneCheckpointObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created_at")] long CreatedAt,
    [property: JsonPropertyName("fine_tuned_model_checkpoint")] string FineTunedModelCheckpoint,
    [property: JsonPropertyName("fine_tuning_job_id")] string FineTuningJobId,
    [property: JsonPropertyName("step_number")] int StepNumber,
    [property: JsonPropertyName("metrics")] FineTuneCheckpointMetrics Metrics);

/// <summary>A page of a cursor-paginated list (OpenAI's shape).</summary>
public sealed record FineTunePage<T>(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] IReadOnlyList<T> Data,
    [property: JsonPropertyName("has_more")] bool HasMore,
    [property: JsonPropertyName("first_id")] string? FirstId,
    [property: JsonPropertyName("last_id")] string? LastId);
