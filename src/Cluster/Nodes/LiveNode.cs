namespace Loom.Cluster.Nodes;

/// <summary>A row of the routing table as an API node read it. <paramref name="ModelLoads"/>: running + waiting
/// sequences of each model's engine, in the order of <paramref name="Models"/>.</summary>
public sealed record LiveNode(string Id, string InternalUrl, IReadOnlyList<string> Models, int Running, int Waiting, int FreePages,
    int ResidentAdapters, DateTimeOffset StartedAt, IReadOnlyList<int>? ModelLoads = null)
{
    /// <summary>Running + waiting sequences of all its engines.</summary>
    public int Load => Running + Waiting;

    /// <summary>Running + waiting sequences of the engine serving <paramref name="baseModel"/> (the node's whole load
    /// when its row carries no per-model figures).</summary>
    public int LoadOf(string baseModel)
    {
        var i = Models.ToList().IndexOf(baseModel);
        return i >= 0 && ModelLoads is { } loads && i < loads.Count ? loads[i] : Load;
    }
}
