using System.Collections.Concurrent;
using System.Text;

namespace Loom.Inference.Tokenization;

/// <summary>The BPE model of tokenizer.json: vocabulary, ranked merges, unknown-token and byte-fallback rules.
/// Encodes one pre-token (a "word") at a time with a rank-ordered merge loop.</summary>
internal sealed class BpeModel
{
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;
    private readonly int[]? _byteTokens; // (256) id of "<0xXX>" per byte, -1 when missing; null without byte fallback
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private int _cacheEntries; // counted here because ConcurrentDictionary.Count takes every lock

    public BpeModel(Dictionary<string, int> vocab, Dictionary<long, (int Rank, int Merged)> merges, int? unkId,
        bool fuseUnk, bool byteFallback, bool ignoreMerges)
    {
        _vocab = vocab;
        _merges = merges;
        UnkId = unkId;
        FuseUnk = fuseUnk;
        IgnoreMerges = ignoreMerges;
        if (byteFallback)
        {
            _byteTokens = new int[256];
            for (var b = 0; b < 256; b++) _byteTokens[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;
    public int? UnkId { get; }
    public bool FuseUnk { get; }
    public bool ByteFallback => _byteTokens is not null;
    public bool IgnoreMerges { get; }

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-token to <paramref name="output"/>.</summary>
    public void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0) return;
        if (IgnoreMerges && _vocab.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }
        if (_cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var ids = Merge(InitialSymbols(word));
        if (word.Length <= MaxCachedWordLength && Volatile.Read(ref _cacheEntries) < MaxCacheEntries && _cache.TryAdd(word, ids))
            Interlocked.Increment(ref _cacheEntries);
        output.AddRange(ids);
    }

    /// <summary>One symbol per character (a whole surrogate pair counts as one), mapped through the vocabulary,
    /// else to its UTF-8 byte tokens (byte fallback), else to the unknown token (fused when fuse_unk is set).
    /// A character with none of these is dropped.</summary>
    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        Span<byte> utf8 = stackalloc byte[4];
        var lastWasUnk = false;
        var lookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        for (var i = 0; i < word.Length;)
        {
            var length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var piece = word.AsSpan(i, length);
            i += length;
            if (lookup.TryGetValue(piece, out var id))
            {
                symbols.Add(id);
                lastWasUnk = false;
                continue;
            }
            if (_byteTokens is not null)
            {
                var count = Encoding.UTF8.GetBytes(piece, utf8);
                var all = true;
                for (var b = 0; b < count; b++) all &= _byteTokens[utf8[b]] >= 0;
                if (all)
                {
                    for (var b = 0; b < count; b++) symbols.Add(_byteTokens[utf8[b]]);
                    lastWasUnk = false;
                    continue;
                }
            }
            if (UnkId is { } unk && !(FuseUnk && lastWasUnk))
            {
                symbols.Add(unk);
                lastWasUnk = true;
            }
        }
        return symbols;
    }

    /// <summary>Applies merges lowest rank first (leftmost first among equal ranks) over a linked list of
    /// symbols, with a priority queue of candidate pairs; stale entries are skipped when popped.</summary>
    private int[] Merge(List<int> symbols)
    {
        var n = symbols.Count;
        if (n < 2) return symbols.ToArray();
        var ids = symbols.ToArray();          // (n) current id at each live position
        var next = new int[n];                // (n) next live position, -1 at the end
        var prev = new int[n];                // (n) previous live position, -1 at the start
        var alive = new bool[n];
        for (var i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }
        var queue = new PriorityQueue<(int Pos, int Left, int Right), (int Rank, int Pos)>();
        void Offer(int pos)
        {
            if (pos < 0 || next[pos] < 0) return;
            var right = next[pos];
            if (_merges.TryGetValue(PairKey(ids[pos], ids[right]), out var merge))
                queue.Enqueue((pos, ids[pos], ids[right]), (merge.Rank, pos));
        }
        for (var i = 0; i + 1 < n; i++) Offer(i);
        var live = n;
        while (queue.TryDequeue(out var candidate, out _))
        {
            var (pos, left, right) = candidate;
            var r = next[pos];
            if (!alive[pos] || r < 0 || ids[pos] != left || ids[r] != right) continue;
            ids[pos] = _merges[PairKey(left, right)].Merged;
            alive[r] = false;
            next[pos] = next[r];
            if (next[r] >= 0) prev[next[r]] = pos;
            live--;
            if (prev[pos] >= 0) Offer(prev[pos]);
            Offer(pos);
        }
        var result = new int[live];
        for (int i = 0, k = 0; i >= 0; i = next[i]) result[k++] = ids[i];
        return result;
    }
}
