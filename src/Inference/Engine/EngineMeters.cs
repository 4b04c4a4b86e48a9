using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Loom.Inference.Engine;

/// <summary>
/// The engine's own instruments on the meter <see cref="MeterName"/>, read from <see cref="IInferenceEngine.GetMetrics"/>
/// when a collector asks (OpenTelemetry, dotnet-counters): tokens computed and generated, iterations, batch size,
/// queue length, pool pages by owner (and the pool's accounting check), adapter loads and evictions, preemptions by
/// cause, requests by outcome, and per tenant (under the fair policy) tokens served, waiting and running sequences and
/// preemptions. Every instrument is tagged with the served model. One metrics snapshot serves all the callbacks of one
/// collection.
/// </summary>
public sealed class EngineMeters : IDisposable
{
    public const string MeterName = "Loom.Engine";

    private readonly IInferenceEngine _engine;
    private readonly Meter _meter;
    private readonly KeyValuePair<string, object?> _model;
    private readonly Lock _gate = new();
    private EngineMetrics? _snapshot;
    private long _takenAt;

    public EngineMeters(IInferenceEngine engine, IMeterFactory meters)
    {
        _engine = engine;
        _meter = meters.Create(MeterName);
        _model = new("model", engine.Model.Name);

        Counter("loom.engine.tokens.computed", "{token}", "Tokens run through the model (prompt and generated)", m => m.Loop.TokensComputed);
        Counter("loom.engine.tokens.generated", "{token}", "Tokens sampled for requests", m => m.Loop.TokensGenerated);
        Counter("loom.engine.tokens.trained", "{token}", "Tokens trained by fine-tuning runs in the engine loop", m => m.Training.TrainedTokens);
        Counter("loom.engine.iterations", "{iteration}", "Engine loop iterations that ran a batch", m => m.Loop.Iterations);
        Counter("loom.engine.adapter.loads", "{load}", "Adapters copied into pool pages", m => m.Adapters.Loads);
        Counter("loom.engine.adapter.evictions", "{eviction}", "Adapters whose pool pages were freed for room", m => m.Adapters.Evictions);
        Counter("loom.engine.adapter.disk_reads", "{read}", "Adapter folders read from disk", m => m.Adapters.DiskLoads);
        Gauge("loom.engine.batch.sequences", "{sequence}", "Sequences in the last batch", m => m.Loop.LastBatchSequences);
        Gauge("loom.engine.batch.tokens", "{token}", "Tokens in the last batch", m => m.Loop.LastBatchTokens);
        Gauge("loom.engine.sequences.running", "{sequence}", "Sequences running", m => m.Loop.Running);
        Gauge("loom.engine.sequences.waiting", "{sequence}", "Sequences waiting for admission (the queue)", m => m.Loop.Waiting);
        Gauge("loom.engine.adapters.registered", "{adapter}", "Adapters registered", m => m.Adapters.Registered);
        Gauge("loom.engine.adapters.resident", "{adapter}", "Adapters in pool pages", m => m.Adapters.InPool);
        Gauge("loom.engine.training.runs", "{run}", "Training runs not yet ended", m => m.Training.Runs);

        _meter.CreateObservableGauge("loom.engine.pool.pages", () => Read(m =>
        [
            Tagged(m.Pool.FreePages, "owner", "free"), Tagged(m.Pool.KvPages, "owner", "kv"),
            Tagged(m.Pool.AdapterPages, "owner", "adapter"), Tagged(m.Pool.TrainingPages, "owner", "training"),
            Tagged(m.Pool.CachedPages, "owner", "cached"),
        ]), "{page}", "Pages of the unified pool by owner (cached: prefix-cache KV blocks)");
        if (engine is ServingEngine serving)
            _meter.CreateObservableGauge("loom.engine.pool.audit_failures", () => new Measurement<long>(serving.AuditPool() is null ? 0 : 1, _model),
                "{failure}", "1 when the page pool's accounting check fails (a page both free and owned, or counters that disagree with the tags), else 0");
        _meter.CreateObservableCounter("loom.engine.preemptions", () => Read(m =>
        [
            Tagged(m.Scheduling.FairnessPreemptions, "cause", "fairness"), Tagged(m.Scheduling.Preemptions - m.Scheduling.FairnessPreemptions, "cause", "memory"),
        ]), "{preemption}", "Sequences preempted, by cause");
        _meter.CreateObservableCounter("loom.engine.requests", () => Read(m =>
        [
            Tagged(m.Requests.Finished, "outcome", "finished"), Tagged(m.Requests.Cancelled, "outcome", "cancelled"),
            Tagged(m.Requests.Failed, "outcome", "failed"),
        ]), "{request}", "Requests that left the engine, by outcome");
        _meter.CreateObservableCounter("loom.engine.tenant.tokens", () => Read(m => m.Tenants.SelectMany(t => new[]
        {
            Tagged(t.InputTokens, "tenant", t.TenantId, "kind", "input"), Tagged(t.OutputTokens, "tenant", t.TenantId, "kind", "output"),
        }).ToArray()), "{token}", "Tokens served per tenant (fair policy)");
        _meter.CreateObservableGauge("loom.engine.tenant.sequences", () => Read(m => m.Tenants.SelectMany(t => new[]
        {
            Tagged(t.Running, "tenant", t.TenantId, "state", "running"), Tagged(t.Waiting, "tenant", t.TenantId, "state", "waiting"),
        }).ToArray()), "{sequence}", "Sequences per tenant and state (fair policy)");
        _meter.CreateObservableCounter("loom.engine.tenant.preemptions", () => Read(m =>
            m.Tenants.Select(t => Tagged(t.Preemptions, "tenant", t.TenantId)).ToArray()), "{preemption}", "Preemptions per tenant (fair policy)");
    }

    private void Counter(string name, string unit, string description, Func<EngineMetrics, long> value) =>
        _meter.CreateObservableCounter(name, () => Read(m => [Tagged(value(m))]), unit, description);

    private void Gauge(string name, string unit, string description, Func<EngineMetrics, int> value) =>
        _meter.CreateObservableGauge(name, () => Read(m => [Tagged((long)value(m))]), unit, description);

    private Measurement<long> Tagged(long value, params string[] tags)
    {
        var all = new KeyValuePair<string, object?>[1 + tags.Length / 2];
        all[0] = _model;
        for (int i = 0; i + 1 < tags.Length; i += 2) all[1 + i / 2] = new(tags[i], tags[i + 1]);
        return new Measurement<long>(value, all);
    }

    /// <summary>Measurements from a snapshot at most 100 ms old (the callbacks of one collection share it).</summary>
    private Measurement<long>[] Read(Func<EngineMetrics, Measurement<long>[]> measure)
    {
        EngineMetrics m;
        lock (_gate)
        {
            if (_snapshot is null || Stopwatch.GetElapsedTime(_takenAt) > TimeSpan.FromMilliseconds(100))
            {
                _snapshot = _engine.GetMetrics();
                _takenAt = Stopwatch.GetTimestamp();
            }
            m = _snapshot;
        }
        return measure(m);
    }

    public void Dispose() => _meter.Dispose();
}
