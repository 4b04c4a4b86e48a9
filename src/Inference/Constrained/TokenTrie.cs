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

    /// <summary>
    /// Inside a JSON string most tokens are plain text: no quote, no backslash, no control byte, whole UTF-8 characters.
    /// Any string state accepts such a token as long as its characters fit the string's length bound, whatever lies
    /// below on the stack, so their mask is precomputed: <c>PlainUpTo[k]</c> holds the plain tokens of at most k
    /// characters (k up to <see cref="MaxPlainChars"/>, which holds them all). Only the other tokens, in the much smaller
    /// <see cref="NonPlain"/> trie, are walked there.
    /// </summary>
    public ulong[][] PlainUpTo { get; private set; } = [];
    public int MaxPlainChars { get; private set; }
    public TokenTrie? NonPlain { get; private set; }

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
        var bytes = new byte[]?[vocabSize];
        for (int id = 0; id < vocabSize; id++) bytes[id] = bytesOf(id);
        var chars = bytes.Select(b => b is { Length: > 0 } ? PlainChars(b) : -1).ToArray();
        var trie = BuildTrie(vocabSize, id => bytes[id]);
        trie.MaxPlainChars = chars.DefaultIfEmpty(-1).Max() is var m && m > 0 ? m : 0;
        trie.PlainUpTo = new ulong[trie.MaxPlainChars + 1][];
        for (int k = 0; k <= trie.MaxPlainChars; k++)
        {
            var bits = new ulong[(vocabSize + 63) / 64];
            for (int id = 0; id < vocabSize; id++)
                if (chars[id] > 0 && chars[id] <= k) bits[id >> 6] |= 1UL << (id & 63);
            trie.PlainUpTo[k] = bits;
        }
        trie.NonPlain = BuildTrie(vocabSize, id => chars[id] > 0 ? null : bytes[id]);
        return trie;
    }

    /// <summary>The characters of a token that is plain string text (see <see cref="PlainUpTo"/>), else -1. UTF-8 is
    /// checked by the same rules as the matcher's (no overlong forms, surrogates or code points past U+10FFFF).</summary>
    private static int PlainChars(byte[] b)
    {
        int chars = 0;
        for (int i = 0; i < b.Length; chars++)
        {
            byte lead = b[i];
            if (lead < 0x20 || lead == '"' || lead == '\\' || (lead >= 0x80 && lead < 0xC2) || lead > 0xF4) return -1;
            int more = lead < 0x80 ? 0 : lead < 0xE0 ? 1 : lead < 0xF0 ? 2 : 3;
            if (i + more >= b.Length) return -1; // a character cut off at the token's end
            for (int j = 1; j <= more; j++)
            {
                byte c = b[i + j];
                var (low, high) = j > 1 ? (0x80, 0xBF) : lead switch { 0xE0 => (0xA0, 0xBF), 0xED => (0x80, 0x9F), 0xF0 => (0x90, 0xBF), 0xF4 => (0x80, 0x8F), _ => (0x80, 0xBF) };
                if (c < low || c > high) return -1;
            }
            i += 1 + more;
        }
        return chars;
    }

    private static TokenTrie BuildTrie(int vocabSize, Func<int, byte[]?> bytesOf)
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
