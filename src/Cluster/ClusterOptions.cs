namespace Loom.Cluster;

/// <summary>Configuration section "Cluster": how inference nodes register and how API nodes route to them.</summary>
public sealed class ClusterOptions
{
    public const string SectionName = "Cluster";

    /// <summary>This node's id in the routing table; default: the host name and the process start time.</summary>
    public string? NodeId { get; set; }
    /// <summary>Inference nodes: the HTTP/2 endpoint (plain text, e.g. <c>http://0.0.0.0:7101</c>) on which API nodes
    /// reach this node's engines. Unset: the node does not register, and serves only its own process (one-machine mode).</summary>
    public string? InternalUrl { get; set; }
    /// <summary>The URL other nodes use to reach <see cref="InternalUrl"/> (its host may differ, e.g. a pod's address);
    /// default: <see cref="InternalUrl"/>.</summary>
    public string? AdvertisedUrl { get; set; }
    /// <summary>When set, every RPC must carry it as a bearer token (both sides read the same value).</summary>
    public string? InternalToken { get; set; }
    /// <summary>How often an inference node rewrites its row.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>A node whose last heartbeat is older than this leaves the routing table.</summary>
    public TimeSpan NodeTimeout { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>How often an API node reads the routing table.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Sequences (running + waiting) on the node an adapter hashes to past which a request goes to the least
    /// loaded node instead.</summary>
    public int AffinityMaxLoad { get; set; } = 32;
    /// <summary>Generations one engine of a node holds at once, running and waiting (<see cref="EngineAdmission"/>); one
    /// more is refused (on an API node: tried on the next node serving the model, then answered 503 with Retry-After)
    /// rather than queued, so overload cannot grow the queue without bound.</summary>
    public int MaxGenerationsPerEngine { get; set; } = 256;
    /// <summary>Retry-After given with a retryable failure (a node lost mid-stream, no live node, every engine busy).</summary>
    public TimeSpan RetryAfter { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long an API node waits for a TCP connection to an inference node before trying the next.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(2);

    public string? Problem() =>
        InternalUrl is { Length: > 0 } u && !(Uri.TryCreate(u, UriKind.Absolute, out var uri) && uri.Scheme == "http")
            ? "Cluster:InternalUrl must be an absolute http:// URL (HTTP/2 in plain text; terminate TLS in the network)"
        : AdvertisedUrl is { Length: > 0 } a && !(Uri.TryCreate(a, UriKind.Absolute, out var adv) && adv.Scheme == "http")
            ? "Cluster:AdvertisedUrl must be an absolute http:// URL"
        : HeartbeatInterval <= TimeSpan.Zero ? "Cluster:HeartbeatInterval must be positive"
        : NodeTimeout <= HeartbeatInterval ? "Cluster:NodeTimeout must be longer than Cluster:HeartbeatInterval"
        : RefreshInterval <= TimeSpan.Zero ? "Cluster:RefreshInterval must be positive"
        : AffinityMaxLoad < 1 ? "Cluster:AffinityMaxLoad must be positive"
        : MaxGenerationsPerEngine < 1 ? "Cluster:MaxGenerationsPerEngine must be positive"
        : RetryAfter <= TimeSpan.Zero ? "Cluster:RetryAfter must be positive"
        : ConnectTimeout <= TimeSpan.Zero ? "Cluster:ConnectTimeout must be positive"
        : null;

    public string AdvertisedOrInternalUrl => (AdvertisedUrl is { Length: > 0 } a ? a : InternalUrl)!.TrimEnd('/');
}
