using Hangfire;
using Loom.Api.FineTuning;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Jobs.Events;

namespace Loom.Jobs.FineTuning;

/// <summary>The API's handle on the jobs tier: fine-tuning events go to the job-event stream, runs to Hangfire (on the
/// base model's queue).</summary>
public sealed class FineTuneScheduler(IJobEventPublisher events, IBackgroundJobClient client) : IFineTuneScheduler
{
    public Task PublishAsync(PlatformDbContext db, FineTuneJob job, FineTuneEvent e, CancellationToken ct) =>
        events.PublishAsync(db, job.TenantId, FineTuneIds.Job(job.Id), e.Kind, e.Payload, ct);

    /// <summary>On the base model's queue, which only nodes serving that model listen to; the queue is part of the job, so
    /// a retry goes back to it.</summary>
    public void Enqueue(Guid jobId, string baseModelName) =>
        client.Enqueue<FineTuneJobRunner>(FineTuneQueues.For(baseModelName), r => r.RunAsync(jobId, CancellationToken.None));
}
