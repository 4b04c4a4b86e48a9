namespace Loom.Front;

/// <summary>Configuration section "Front": the API+web nodes to spread requests over and how they are checked.</summary>
public sealed class FrontOptions
{
    public const string SectionName = "Front";

    /// <summary>Base URLs of the API+web nodes (Front:Nodes:0, Front:Nodes:1, ...).</summary>
    public List<string> Nodes { get; set; } = [];
    /// <summary>How often each node's /readyz is asked; a node that fails once leaves the rotation until it answers again.</summary>
    public TimeSpan HealthInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long a /readyz answer may take.</summary>
    public TimeSpan HealthTimeout { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long a node that failed requests (connection refused or reset) stays out before it is tried again;
    /// also the window its failure rate is counted over (see ProxyConfig.ConfigurePassive).</summary>
    public TimeSpan Reactivation { get; set; } = TimeSpan.FromSeconds(5);

    public string? Problem() =>
        Nodes.Count == 0 ? "Front:Nodes must name at least one node (Front:Nodes:0=http://127.0.0.1:5081)"
        : Nodes.FirstOrDefault(n => !(Uri.TryCreate(n, UriKind.Absolute, out var u) && u.Scheme is "http" or "https")) is { } bad
            ? $"Front:Nodes: '{bad}' is not an absolute http(s) URL"
        : HealthInterval <= TimeSpan.Zero || HealthTimeout <= TimeSpan.Zero || Reactivation <= TimeSpan.Zero
            ? "Front:HealthInterval, HealthTimeout and Reactivation must be positive"
        : null;
}
