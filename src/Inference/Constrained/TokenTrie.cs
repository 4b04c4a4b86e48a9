using Loom.Inference.Tokenization;

namespace Loom.Inference.Constrained;

/// <summary>
/// The vocabulary as a prefix tree of the bytes each token decodes to, built once per tokenizer. Walking it with a
/// <see cref="JsonMatcher"/> visits each byte prefix once, and drops a whole subtree at the first byte the grammar
/// refuses, instead of trying every token from the start. Special tokens (which decode to nothing in the output) are
/// left out; end-of-sequence tokens are handled by the caller.
/// </summary>
public sealed class TokenTrie
{
    // Node 0 is the root (the empty prefix). Children of a node are consecutive siblings, in byte order.
    private readonly byte[] _label;       // (nodes) the byte leading into the node
    private readonly int[] _firstChild;   // (nodes) -1 when a leaf
    private readonly int[] _nextSibling;  // (nodes) -1 for the last child
    private readonly int[] _tokenStart;   // (nodes + 1) the node's tokens are _tokens[_tokenStart[n] .. _tokenStart[n + 1])
    private readonly int[] _tokens;       // token ids grouped by the node their bytes end at

    public int VocabSize { get; }
    public int NodeCount => _label.Length;
    public int MaxTokenBytes { get; }

    private TokenTrie(int vocab, byte[] label, int[] firstChild, int[] nextSibling, int[] tokenStart, int[] tokens, int maxBytes)
    {
        VocabSize = vocab;
        _label = label;
        _firstChild = firstChild;
        _nextSibling = nextSibling;
        _tokenStart = tokenStart;
        _tokens = tokens;
        MaxTokenBytes = maxBytes;
    }

    public static TokenTrie Build(ITokenizer tokenizer) => Build(tokenizer.VocabSize, id => tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id));

    /// <summary>From each id's bytes (null or empty: the id is never allowed by a grammar).</summary>
    public static TokenTrie Build(int vocabSize, Func<int, byte[]?> bytesOf)
    {
        var entries = new List<(byte[] Bytes, int Id)>();
        for (int id = 0; id < vocabSize; id++)
            if (bytesOf(id) is { Length: > 0 } bytes) entries.Add((bytes, id));
        entries.Sort((x, y) => x.Bytes.AsSpan().SequenceCompareTo(y.Bytes) is var c and not 0 ? c : x.Id.CompareTo(y.Id));

        var label = new List<byte> { 0 };
        var firstChild = new List<int> { -1 };
        var nextSibling = new List<int> { -1 };
        var lastChild = new List<int> { -1 };
        var endsAt = new int[entries.Count];
        var path = new List<int> { 0 }; // path[d]: the node of the current prefix of length d
        byte[] previous = [];
        int maxBytes = 0;
        for (int e = 0; e < entries.Count; e++)
        {
            var bytes = entries[e].Bytes;
            maxBytes = Math.Max(maxBytes, bytes.Length);
            int common = bytes.AsSpan().CommonPrefixLength(previous);
            path.RemoveRange(common + 1, path.Count - common - 1);
            for (int d = common; d < bytes.Length; d++)
            {
                int parent = path[d], node = label.Count;
                label.Add(bytes[d]);
                firstChild.Add(-1);
                nextSibling.Add(-1);
                lastChild.Add(-1);
                if (lastChild[parent] < 0) firstChild[parent] = node;
                else nextSibling[lastChild[parent]] = node;
                lastChild[parent] = node;
                path.Add(node);
            }
            endsAt[e] = path[bytes.Length];
            previous = bytes;
        }
        // Group token ids by node.
        var tokenStart = new int[label.Count + 1];
        foreach (int node in endsAt) tokenStart[node + 1]++;
        for (int n = 0; n < label.Count; n++) tokenStart[n + 1] += tokenStart[n];
        var tokens = new int[entries.Count];
        var fill = tokenStart[..^1].ToArray();
        for (int e = 0; e < entries.Count; e++) tokens[fill[endsAt[e]]++] = entries[e].Id;
        return new TokenTrie(vocabSize, [.. label], [.. firstChild], [.. nextSibling], tokenStart, tokens, maxBytes);
    }

    /// <summary>
    /// Marks in <paramref name="allowed"/> (one bit per token id) every token whose bytes <paramref name="state"/> accepts
    /// in full. <paramref name="scratch"/> holds at least <see cref="MaxTokenBytes"/> + 1 matchers of the same grammar;
    /// <paramref name="state"/> is not changed. Returns the number of tokens marked.
    /// </summary>
    public int Walk(JsonMatcher state, JsonMatcher[] scratch, ulong[] allowed)
    {
        scratch[0].CopyFrom(state);
        return Walk(0, 0, scratch, allowed);
    }

    private int Walk(int node, int depth, JsonMatcher[] scratch, ulong[] allowed)
    {
        int count = 0;
        var from = scratch[depth];
        var next = scratch[depth + 1];
        for (int child = _firstChild[node]; child >= 0; child = _nextSibling[child])
        {
            next.CopyFrom(from);
            if (!next.Advance(_label[child])) continue;
            for (int t = _tokenStart[child]; t < _tokenStart[child + 1]; t++)
            {
                int id = _tokens[t];
                allowed[id >> 6] |= 1UL << (id & 63);
                count++;
            }
            if (_firstChild[child] >= 0) count += Walk(child, depth + 1, scratch, allowed);
        }
        return count;
    }
}
