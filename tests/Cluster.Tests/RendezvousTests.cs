using Loom.Cluster.Routing;

namespace Loom.Cluster.Tests;

/// <summary>Rendezvous hashing spreads keys evenly, moves only the keys of a node that leaves, gives a joining node
/// about 1/n of the keys and no others; the router leaves affinity only past the load threshold.</summary>
public class RendezvousTests
{
    private static readonly string[] Keys = [.. Enumerable.Range(0, 20_000).Select(i => Rendezvous.Key("tiny-chat", Guid.NewGuid().ToString("N")))];

    private static Dictionary<string, string> Assign(IReadOnlyList<string> nodes) =>
        Keys.ToDictionary(k => k, k => Rendezvous.Rank(nodes, n => n, k)[0]);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void KeysSpreadEvenlyOverTheNodes(int count)
    {
        var nodes = Enumerable.Range(0, count).Select(i => $"node-{i}").ToList();
        var counts = Assign(nodes).Values.GroupBy(n => n).ToDictionary(g => g.Key, g => g.Count());
        var expected = Keys.Length / (double)count;
        foreach (var node in nodes)
        {
            var share = counts.GetValueOrDefault(node) / expected;
            // 20,000 keys: a fair split is within a few percent (binomial sd ~1-2%); 8% fails a biased hash.
            Assert.True(Math.Abs(share - 1) < 0.08, $"{node} got {counts.GetValueOrDefault(node)} keys, {share:P1} of its fair share");
        }
    }

    [Fact]
    public void ANodeThatLeavesMovesOnlyItsOwnKeys()
    {
        var before = Assign(["a", "b", "c", "d"]);
        var after = Assign(["a", "b", "d"]);
        foreach (var key in Keys)
            if (before[key] != "c") Assert.Equal(before[key], after[key]);
            else Assert.NotEqual("c", after[key]);
        // Its keys go to all the others, not one of them.
        var heirs = Keys.Where(k => before[k] == "c").GroupBy(k => after[k]).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(3, heirs.Count);
    }

    [Fact]
    public void ANodeThatJoinsTakesAboutItsShareAndNothingMoves()
    {
        var before = Assign(["a", "b", "c"]);
        var after = Assign(["a", "b", "c", "e"]);
        var moved = Keys.Where(k => before[k] != after[k]).ToList();
        Assert.All(moved, k => Assert.Equal("e", after[k]));
        var share = moved.Count / (double)Keys.Length;
        Assert.InRange(share, 0.25 - 0.03, 0.25 + 0.03);
    }

    [Fact]
    public void TheScoreIsTheSameInEveryProcess()
    {
        // XxHash64 of the UTF-8 bytes: a value computed once, so a hash seeded per process (string.GetHashCode) fails here.
        Assert.Equal(System.IO.Hashing.XxHash64.HashToUInt64("k\0n"u8), Rendezvous.Score("k", "n"));
        Assert.Equal(Rendezvous.Score("tiny-chat\nabc", "inf-a"), Rendezvous.Score(Rendezvous.Key("tiny-chat", "abc"), "inf-a"));
        Assert.NotEqual(Rendezvous.Key("m", null), Rendezvous.Key("m", ""));
    }

    [Fact]
    public void TheRouterKeepsAffinityUntilTheThresholdThenTakesTheLeastLoaded()
    {
        string[] nodes = ["a", "b", "c"];
        var key = Keys[0];
        var home = Rendezvous.Rank(nodes, n => n, key)[0];
        var load = nodes.ToDictionary(n => n, _ => 0);

        load[home] = 7;
        var (order, placement) = NodeRouter.Order(nodes, n => n, n => load[n], key, maxLoad: 8);
        Assert.Equal((home, Placement.Affinity), (order[0], placement));

        load[home] = 8;
        var lightest = nodes.First(n => n != home);
        load[lightest] = 1;
        foreach (var other in nodes.Where(n => n != home && n != lightest)) load[other] = 5;
        (order, placement) = NodeRouter.Order(nodes, n => n, n => load[n], key, maxLoad: 8);
        Assert.Equal((lightest, Placement.LeastLoaded), (order[0], placement));
        Assert.Equal(nodes.Length, order.Distinct().Count());

        // Everyone as loaded as the home node: stay where the adapter is resident.
        foreach (var n in nodes) load[n] = 8;
        (order, placement) = NodeRouter.Order(nodes, n => n, n => load[n], key, maxLoad: 8);
        Assert.Equal((home, Placement.Affinity), (order[0], placement));
    }
}
