using Loom.Inference.Engine;

namespace Loom.Web.Portal.Admin;

/// <summary>One second of the engine: pool pages by use (they add up to the pool; <paramref name="CachedPages"/>: KV blocks
/// of the prefix cache), batch and queue, and each tenant's virtual token counter.</summary>
public sealed record EngineSample(DateTimeOffset At, int KvPages, int AdapterPages, int TrainingPages, int CachedPages, int FreePages,
    int BatchSequences, int Running, int Waiting, IReadOnlyDictionary<string, double> TenantCounters);

/// <summary>
/// Samples this node's engine once a second and keeps the last <see cref="Capacity"/> samples, so the admin engine
/// page shows the recent past as time series from the moment it opens. Runs only in processes with the web role and
/// an engine; a node without one keeps nothing.
/// </summary>
public sealed class EngineHistory(IServiceProvider services, TimeProvider clock, ILogger<EngineHistory> logger) : BackgroundService
{
    public const int Capacity = 300;
    private readonly Queue<EngineSample> _samples = new();

    public IReadOnlyList<EngineSample> Snapshot()
    {
        lock (_samples) return [.. _samples];
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetService<IInferenceEngine>() is not { } engine) return;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), clock);
        try
        {
            do
            {
                try { Add(Sample(engine.GetMetrics())); }
                catch (InvalidOperationException e) { logger.LogDebug(e, "The engine is not serving; no sample"); }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    private EngineSample Sample(EngineMetrics m) => new(clock.GetUtcNow(), m.Pool.KvPages, m.Pool.AdapterPages, m.Pool.TrainingPages, m.Pool.CachedPages, m.Pool.FreePages,
        m.Loop.LastBatchSequences, m.Loop.Running, m.Loop.Waiting, m.Tenants.ToDictionary(t => t.TenantId, t => t.Counter, StringComparer.Ordinal));

    private void Add(EngineSample sample)
    {
        lock (_samples)
        {
            _samples.Enqueue(sample);
            while (_samples.Count > Capacity) _samples.Dequeue();
        }
    }
}
