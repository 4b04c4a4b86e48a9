using Loom.Cluster.Nodes;
using Loom.Cluster.Routing;

namespace Loom.Cluster.Tests;

/// <summary>Routing weighs the engine of the request's base model: a node busy with its other model keeps the requests
/// that hash to it, and a node busy with this model sends them to the least loaded.</summary>
public class ModelLoadRoutingTests
{
    private const int MaxLoad = 8;

    private static LiveNode Node(string id, string[] models, int[] loads) =>
        new(id, $"http://{id}", models, loads.Sum(), 0, 100, 0, DateTimeOffset.UnixEpoch, loads);

    /// <summary>An adapter id whose key ranks <paramref name="home"/> first among <paramref name="nodes"/>.</summary>
    private static string AdapterHomedOn(string home, string baseModel, IReadOnlyList<LiveNode> nodes) =>
        Enumerable.Range(0, 1000).Select(i => $"adapter-{i}").First(a => Rendezvous.Rank(nodes, n => n.Id, Rendezvous.Key(baseModel, a))[0].Id == home);

    [Fact]
    public void ANodeBusyWithItsOtherModelKeepsTheRequestsThatHashToIt()
    {
        LiveNode[] nodes = [Node("inf-a", ["tiny-chat", "twin-chat"], [0, 50]), Node("inf-b", ["tiny-chat"], [3])];
        var adapter = AdapterHomedOn("inf-a", "tiny-chat", nodes);
        var (order, placement) = NodeRouter.OrderFor(nodes, "tiny-chat", adapter, _ => 0, MaxLoad);
        Assert.Equal(Placement.Affinity, placement);
        Assert.Equal("inf-a", order[0].Id);
    }

    [Fact]
    public void ANodeBusyWithThisModelSendsTheRequestToTheLeastLoaded()
    {
        LiveNode[] nodes = [Node("inf-a", ["tiny-chat", "twin-chat"], [50, 0]), Node("inf-b", ["tiny-chat"], [3])];
        var adapter = AdapterHomedOn("inf-a", "tiny-chat", nodes);
        var (order, placement) = NodeRouter.OrderFor(nodes, "tiny-chat", adapter, _ => 0, MaxLoad);
        Assert.Equal(Placement.LeastLoaded, placement);
        Assert.Equal("inf-b", order[0].Id);
    }

    [Fact]
    public void ThisApiNodesRequestsInFlightCountWhenTheHeartbeatLags()
    {
        LiveNode[] nodes = [Node("inf-a", ["tiny-chat"], [0]), Node("inf-b", ["tiny-chat"], [0])];
        var adapter = AdapterHomedOn("inf-a", "tiny-chat", nodes);
        var (order, placement) = NodeRouter.OrderFor(nodes, "tiny-chat", adapter, n => n.Id == "inf-a" ? MaxLoad : 0, MaxLoad);
        Assert.Equal((Placement.LeastLoaded, "inf-b"), (placement, order[0].Id));
    }

    [Fact]
    public void ARowWithoutPerModelLoadsIsWeighedByItsWholeLoad()
    {
        var old = new LiveNode("inf-a", "http://inf-a", ["tiny-chat", "twin-chat"], 20, 5, 100, 0, DateTimeOffset.UnixEpoch);
        Assert.Equal(25, old.LoadOf("tiny-chat"));
        Assert.Equal(7, Node("inf-b", ["tiny-chat", "twin-chat"], [3, 7]).LoadOf("twin-chat"));
    }
}
