using System.IO.Hashing;
using System.Text;

namespace Loom.Cluster.Routing;

/// <summary>
/// Rendezvous (highest random weight) hashing: every (key, node) pair gets a score from a fixed 64-bit hash
/// (XxHash64, the same in every process, unlike <see cref="string.GetHashCode()"/>), and a key goes to the node with
/// the highest score. When a node leaves, only its keys move (each to its own runner-up); when one joins, it takes
/// about 1/n of the keys from the others.
/// </summary>
public static class Rendezvous
{
    /// <summary>The routing key of an adapter on a base model (the base model alone when no adapter is named).</summary>
    public static string Key(string baseModel, string? adapterId) => adapterId is null ? baseModel : baseModel + "\n" + adapterId;

    public static ulong Score(string key, string nodeId)
    {
        var bytes = Encoding.UTF8.GetBytes(key + "\0" + nodeId);
        return XxHash64.HashToUInt64(bytes);
    }

    /// <summary>The nodes from the highest score to the lowest (ties, which need a 64-bit collision, by id).</summary>
    public static List<T> Rank<T>(IEnumerable<T> nodes, Func<T, string> id, string key) =>
        nodes.Select(n => (Node: n, Score: Score(key, id(n)), Id: id(n)))
            .OrderByDescending(x => x.Score).ThenBy(x => x.Id, StringComparer.Ordinal)
            .Select(x => x.Node).ToList();
}
