namespace Loom.Data.Entities;

/// <summary>
/// A live inference node as it last reported itself (platform-wide, not tenant-owned). The node writes its row on
/// every heartbeat; API nodes route to the rows whose heartbeat is recent, so a node that stops beating leaves the
/// routing table without anyone deleting it. Times are the database's clock (<c>now()</c>), so nodes' clocks need not agree.
/// </summary>
public class InferenceNode
{
    /// <summary>Cluster:NodeId, unique per process (host name and a start-time suffix by default).</summary>
    public required string Id { get; set; }
    /// <summary>Where API nodes reach its RPC endpoint (HTTP/2), e.g. <c>http://10.0.0.7:7101</c>.</summary>
    public required string InternalUrl { get; set; }
    /// <summary>Names of the base models it serves.</summary>
    public string[] Models { get; set; } = [];
    /// <summary>Running + waiting sequences of each base model's engine, in the order of <see cref="Models"/> (routing
    /// weighs the engine a request goes to).</summary>
    public int[] ModelLoads { get; set; } = [];
    /// <summary>Sequences running and waiting in its engines, free pages of its pools, adapters resident in them (all
    /// engines added up).</summary>
    public int Running { get; set; }
    public int Waiting { get; set; }
    public int FreePages { get; set; }
    public int ResidentAdapters { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    public DateTimeOffset HeartbeatAt { get; set; }
}
