using Loom.Data;
using Loom.Data.Entities;

namespace Loom.Api.FineTuning;

/// <summary>How the API hands fine-tuning jobs to the jobs tier and records their events (implemented there).</summary>
public interface IFineTuneScheduler
{
    /// <summary>Appends an event to the job's stream on <paramref name="db"/>'s connection (inside its current transaction
    /// when there is one, so the event commits with the caller's writes).</summary>
    Task PublishAsync(PlatformDbContext db, FineTuneJob job, FineTuneEvent e, CancellationToken ct);

    /// <summary>Queues the background run of a job whose row is committed, for a node that serves its base model.</summary>
    void Enqueue(Guid jobId, string baseModelName);
}

/// <summary>One event of a fine-tuning job as stored in the job-event stream.</summary>
/// <param name="Kind">created, validated, started, metrics, checkpoint, paused, resumed, succeeded, failed, cancelled, ...</param>
/// <param name="Level">info, warn or error.</param>
/// <param name="Data">Extra fields (metrics events: step, train_loss, ...), or null.</param>
public sealed record FineTuneEvent(string Kind, string Message, string Level = "info", object? Data = null)
{
    public const string Metrics = "metrics";

    /// <summary>The stored payload: message, level and data.</summary>
    public object Payload => new Dictionary<string, object?> { ["message"] = Message, ["level"] = Level, ["data"] = Data };
}
