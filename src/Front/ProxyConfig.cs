using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Health;

namespace Loom.Front;

/// <summary>YARP's routes and cluster for <see cref="FrontOptions"/>: every path to the cluster of Loom nodes,
/// power-of-two-choices balancing, active health checks on /readyz and passive ones on transport failures, and a
/// cookie that keeps a portal session on one node (a Blazor circuit lives in one process; API clients keep no cookie
/// and are spread).</summary>
public static class ProxyConfig
{
    public const string ClusterId = "loom";
    public const string AffinityCookie = ".Loom.Node";

    public static (IReadOnlyList<RouteConfig> Routes, IReadOnlyList<ClusterConfig> Clusters) Build(FrontOptions o)
    {
        var route = new RouteConfig { RouteId = "all", ClusterId = ClusterId, Match = new RouteMatch { Path = "{**path}" } };
        var cluster = new ClusterConfig
        {
            ClusterId = ClusterId,
            LoadBalancingPolicy = "PowerOfTwoChoices",
            SessionAffinity = new SessionAffinityConfig
            {
                Enabled = true, Policy = "HashCookie", FailurePolicy = "Redistribute", AffinityKeyName = AffinityCookie,
            },
            HealthCheck = new HealthCheckConfig
            {
                Active = new ActiveHealthCheckConfig
                {
                    Enabled = true, Interval = o.HealthInterval, Timeout = o.HealthTimeout, Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures, Path = "/readyz",
                },
                Passive = new PassiveHealthCheckConfig
                {
                    Enabled = true, Policy = HealthCheckConstants.PassivePolicy.TransportFailureRate, ReactivationPeriod = o.Reactivation,
                },
            },
            Metadata = new Dictionary<string, string>
            {
                // One failed /readyz takes a node out (the next good one brings it back).
                [ConsecutiveFailuresHealthPolicyOptions.ThresholdMetadataName] = "1",
            },
            // Streams (completions, SignalR) may stay quiet between events for a while.
            HttpRequest = new Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromMinutes(10) },
            Destinations = o.Nodes.Select((url, i) => (url, i)).ToDictionary(d => $"node-{d.i}", d => new DestinationConfig { Address = d.url }),
        };
        return ([route], [cluster]);
    }

    /// <summary>The passive policy's failure window is the reactivation period. YARP keeps a node that the passive
    /// check took out for the longer of the two (its window defaults to 60 s), so with the default window a node
    /// killed under load stayed out of the rotation for a minute after it came back, whatever Reactivation said.</summary>
    public static void ConfigurePassive(TransportFailureRateHealthPolicyOptions passive, FrontOptions o) =>
        passive.DetectionWindowSize = o.Reactivation;
}
