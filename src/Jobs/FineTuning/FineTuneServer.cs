using Hangfire;
using Hangfire.Common;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.FineTuning;

/// <summary>
/// The Hangfire server of a process whose engine serves a base model (the inference role): it listens to that model's
/// fine-tune queue only (<see cref="FineTuneQueues.For"/>), with <see cref="JobsOptions.FineTuneWorkerCount"/> workers,
/// so a fine-tune trains on a node that holds its base model. A process without a model starts none; its fine-tunes
/// wait in their queue (status <c>queued</c>) until a node serving the model starts.
/// </summary>
internal sealed class FineTuneServer(IServiceProvider services, IOptions<JobsOptions> options, ILogger<FineTuneServer> logger)
    : IHostedService, IDisposable
{
    private BackgroundJobServer? _server;

    /// <summary>The queue this process's server listens to, or null when it serves no model.</summary>
    public string? Queue { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var engine = services.GetService<IInferenceEngine>();
        if (engine is null or UnconfiguredInferenceEngine || o.FineTuneWorkerCount == 0)
        {
            logger.LogInformation("This process takes no fine-tunes ({Reason})", o.FineTuneWorkerCount == 0 ? "Jobs:FineTuneWorkerCount is 0" : "it serves no base model");
            return Task.CompletedTask;
        }
        string model = engine.Model.Name;
        Queue = FineTuneQueues.For(model);
        _server = new BackgroundJobServer(new BackgroundJobServerOptions
        {
            Queues = [Queue],
            WorkerCount = o.FineTuneWorkerCount,
            ServerName = $"{Environment.MachineName}:{Environment.ProcessId}:{Queue}",
            SchedulePollingInterval = TimeSpan.FromSeconds(1),
            Activator = services.GetRequiredService<JobActivator>(),
            FilterProvider = services.GetService<IJobFilterProvider>(),
            TimeZoneResolver = services.GetService<ITimeZoneResolver>(),
        }, services.GetRequiredService<JobStorage>());
        logger.LogInformation("Fine-tunes of '{Model}' run here: Hangfire queue {Queue}, {Workers} worker(s)", model, Queue, o.FineTuneWorkerCount);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is null) return;
        // A graceful stop re-queues a running fine-tune at once (its run stops at the next step and keeps its checkpoints).
        _server.SendStop();
        await _server.WaitForShutdownAsync(cancellationToken);
    }

    public void Dispose() => _server?.Dispose();
}
