using Loom.Cluster.Nodes;

namespace Loom.Cluster.Routing;

/// <summary>How a request was placed.</summary>
public enum Placement
{
    /// <summary>On the node its (base model, adapter) hashes to.</summary>
    Affinity,
    /// <summary>On the least loaded node, because the one it hashes to was past the load threshold.</summary>
    LeastLoaded,
    /// <summary>On a later node in the order, because the ones before could not be reached.</summary>
    Failover,
}

/// <summary>
/// Orders the live nodes serving a base model for one request: the node (base model, adapter) hashes to first, unless
/// its load (running + waiting sequences) is at <c>maxLoad</c> or more and another node carries less, in which case
/// the least loaded goes first. The rest follow in rendezvous order: they are where the request goes if the first
/// cannot be reached.
/// </summary>
public static class NodeRouter
{
    /// <summary>The order for a request on <paramref name="baseModel"/> (with <paramref name="adapterId"/>): a node is
    /// weighed by the load of its engine for that model, or by this API node's requests for it in flight there when
    /// more (the heartbeat lags); another model's engine on the same node does not push the request away.</summary>
    public static (List<LiveNode> Order, Placement Placement) OrderFor(IReadOnlyCollection<LiveNode> nodes, string baseModel, string? adapterId,
        Func<LiveNode, int> inFlight, int maxLoad) =>
        Order(nodes, n => n.Id, n => Math.Max(n.LoadOf(baseModel), inFlight(n)), Rendezvous.Key(baseModel, adapterId), maxLoad);

    public static (List<T> Order, Placement Placement) Order<T>(IReadOnlyCollection<T> nodes, Func<T, string> id, Func<T, int> load, string key, int maxLoad)
    {
        var ranked = Rendezvous.Rank(nodes, id, key);
        if (ranked.Count < 2 || load(ranked[0]) < maxLoad) return (ranked, Placement.Affinity);
        var least = ranked.MinBy(load)!; // the first of equals in rendezvous order
        if (load(least) >= load(ranked[0])) return (ranked, Placement.Affinity);
        ranked.Remove(least);
        ranked.Insert(0, least);
        return (ranked, Placement.LeastLoaded);
    }
}
