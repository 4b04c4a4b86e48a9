using System.Diagnostics.Metrics;

namespace Loom.Cluster;

/// <summary>The routing meter (<c>Loom.Cluster</c>): on API nodes where requests went, retries and streams lost; where
/// engines run, the generations refused at the admission bound.</summary>
public sealed class ClusterMeters : IDisposable
{
    public const string MeterName = "Loom.Cluster";
    private readonly Meter _meter;
    private readonly Counter<long> _routed;
    private readonly Counter<long> _failovers;
    private readonly Counter<long> _lost;
    private readonly Counter<long> _refused;

    public ClusterMeters(IMeterFactory meters)
    {
        _meter = meters.Create(MeterName);
        _routed = _meter.CreateCounter<long>("loom.cluster.requests", "{request}", "Generations that reached an inference node, by placement (affinity, least_loaded or failover)");
        _failovers = _meter.CreateCounter<long>("loom.cluster.failovers", "{request}", "Generations sent to another node because the first could not be reached or its engine was full");
        _lost = _meter.CreateCounter<long>("loom.cluster.streams_lost", "{request}", "Generations whose node was lost after they began");
        _refused = _meter.CreateCounter<long>("loom.cluster.refused", "{request}",
            "Generations refused because an engine held Cluster:MaxGenerationsPerEngine (counted where the engine runs)");
    }

    public void Routed(Routing.Placement placement) => _routed.Add(1, new KeyValuePair<string, object?>("placement", placement switch
    {
        Routing.Placement.Affinity => "affinity",
        Routing.Placement.LeastLoaded => "least_loaded",
        _ => "failover",
    }));

    public void FailedOver() => _failovers.Add(1);
    public void Lost() => _lost.Add(1);
    public void Refused() => _refused.Add(1);

    public void Dispose() => _meter.Dispose();
}
