using Hangfire;
using Hangfire.Common;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Jobs.FineTuning;

/// <summary>
/// The Hangfire server of a process whose engines serve base models (the inference role): it listens to the fine-tune
/// queue of each model an engine here serves and trains (<see cref="FineTuneQueues.For"/>, <see cref="TrainingEngines"/>),
/// with <see cref="JobsOptions.FineTuneWorkerCount"/> workers, so a fine-tune trains on a node that holds its base model.
/// A process without a model starts none; its fine-tunes wait in their queue (status <c>queued</c>) until a node
/// serving the model starts.
/// </summary>
internal sealed class FineTuneServer(IServiceProvider services, IOptions<JobsOptions> options, ILogger<FineTuneServer> logger)
    : IHostedService, IDisposable
{
    private BackgroundJobServer? _server;

    /// <summary>The queues this process's server listens to (one per base model it trains); empty when none.</summary>
    public IReadOnlyList<string> Queues { get; private set; } = [];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var models = TrainingEngines.Models(services);
        if (models.Count == 0 || o.FineTuneWorkerCount == 0)
        {
            logger.LogInformation("This process takes no fine-tunes ({Reason})", o.FineTuneWorkerCount == 0 ? "Jobs:FineTuneWorkerCount is 0" : "it serves no base model");
            return Task.CompletedTask;
        }
        Queues = [.. models.Select(FineTuneQueues.For)];
        _server = new BackgroundJobServer(new BackgroundJobServerOptions
        {
            Queues = [.. Queues],
            WorkerCount = o.FineTuneWorkerCount,
            ServerName = $"{Environment.MachineName}:{Environment.ProcessId}:{string.Join("+", Queues)}",
            SchedulePollingInterval = TimeSpan.FromSeconds(1),
            Activator = services.GetRequiredService<JobActivator>(),
            FilterProvider = services.GetService<IJobFilterProvider>(),
            TimeZoneResolver = services.GetService<ITimeZoneResolver>(),
        }, services.GetRequiredService<JobStorage>());
        logger.LogInformation("Fine-tunes of {Models} run here: Hangfire queues {Queues}, {Workers} worker(s)", string.Join(", ", models), string.Join(", ", Queues), o.FineTuneWorkerCount);
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
