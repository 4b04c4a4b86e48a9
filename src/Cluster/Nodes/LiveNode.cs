namespace Loom.Cluster.Nodes;

/// <summary>A row of the routing table as an API node read it.</summary>
public sealed record LiveNode(string Id, string InternalUrl, IReadOnlyList<string> Models, int Running, int Waiting, int FreePages,
    int ResidentAdapters, DateTimeOffset StartedAt)
{
    public int Load => Running + Waiting;
}
