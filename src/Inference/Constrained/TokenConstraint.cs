namespace Loom.Inference.Constrained;

/// <summary>
/// Constrained decoding for one sequence: before each sample, <see cref="Mask"/> sets the logit of every token the
/// grammar does not allow next to -infinity; after it, <see cref="Accept"/> moves the grammar past the chosen token.
/// End-of-sequence tokens are allowed only where the text is a complete value. Masks are cached by grammar state
/// (inside a long string, say, every step has the same state and costs one lookup).
/// With a trigger (lazy mode, as for tool calls that the model may or may not make) the text is free until the output
/// ends with the trigger; from there a value of the grammar is enforced, and once it is complete the text is free again.
/// </summary>
public sealed class TokenConstraint
{
    public const int MaxCachedMasks = 512;

    private readonly TokenTrie _trie;
    private readonly JsonMatcher _state;
    private readonly JsonMatcher _probe;
    private readonly JsonMatcher[] _scratch; // (max token bytes + 1) matchers for the trie walk
    private readonly int[] _eos;
    private readonly Func<int, byte[]?> _bytesOf;
    private readonly Dictionary<byte[], (ulong[] Bits, int Count)> _cache = new(ByteArrayComparer.Instance);
    private ulong[] _bits;                   // (ceil(vocab / 64)) the current step's mask, one bit per token id
    private readonly byte[]? _trigger;
    private readonly List<byte> _window = []; // lazy mode: the free text's last bytes, searched for the trigger
    private bool _active;

    public TokenConstraint(JsonGrammar grammar, TokenTrie trie, Func<int, byte[]?> bytesOf, IEnumerable<int> eosIds, byte[]? trigger = null)
    {
        _trigger = trigger is { Length: > 0 } ? trigger : null;
        _active = _trigger is null;
        _trie = trie;
        _bytesOf = bytesOf;
        _state = new JsonMatcher(grammar);
        _probe = _state.Clone();
        _scratch = new JsonMatcher[trie.MaxTokenBytes + 1];
        for (int i = 0; i < _scratch.Length; i++) _scratch[i] = _state.Clone();
        _eos = eosIds.Where(id => (uint)id < (uint)trie.VocabSize).Distinct().ToArray();
        _bits = new ulong[(trie.VocabSize + 63) / 64];
    }

    /// <summary>The value is complete: nothing but the end of the sequence may follow (never in lazy mode).</summary>
    public bool IsDone => _trigger is null && _state.IsDone;

    /// <summary>Lazy mode: a value is being written under the grammar now.</summary>
    public bool Active => _active;

    /// <summary>Masks disallowed tokens in <paramref name="logits"/> (its length may exceed the vocabulary: those ids are
    /// padding and are masked too). Returns how many tokens remain allowed (0: the grammar is stuck, which a
    /// well-formed vocabulary never causes).</summary>
    public int Mask(Span<float> logits)
    {
        if (!_active) return logits.Length;
        int count = Allowed();
        var bits = _bits;
        int vocab = Math.Min(logits.Length, _trie.VocabSize);
        for (int w = 0; w * 64 < vocab; w++)
        {
            ulong word = bits[w];
            if (word == ulong.MaxValue) continue;
            int end = Math.Min(64, vocab - w * 64);
            for (int j = 0; j < end; j++)
                if ((word & (1UL << j)) == 0) logits[w * 64 + j] = float.NegativeInfinity;
        }
        if (logits.Length > vocab) logits[vocab..].Fill(float.NegativeInfinity);
        return count;
    }

    /// <summary>Whether <paramref name="token"/> is allowed now (the mask's answer, for checks).</summary>
    public bool IsAllowed(int token)
    {
        Allowed();
        return (uint)token < (uint)_trie.VocabSize && (_bits[token >> 6] & (1UL << (token & 63))) != 0;
    }

    private int Allowed()
    {
        var key = _state.StateKey.ToArray();
        if (_cache.TryGetValue(key, out var hit))
        {
            _bits = hit.Bits;
            return hit.Count;
        }
        ulong[] bits;
        int count;
        if (_state.InPlainString(out int room) && _trie.NonPlain is { } escapes)
        {
            // Plain-text tokens that fit, from the precomputed sets; only quotes, escapes and split characters are walked.
            bits = (ulong[])_trie.PlainUpTo[Math.Min(room, _trie.MaxPlainChars)].Clone();
            count = 0;
            foreach (ulong w in bits) count += System.Numerics.BitOperations.PopCount(w);
            count += escapes.Walk(_state, _scratch, bits);
        }
        else
        {
            bits = new ulong[_bits.Length];
            count = _state.IsDone ? 0 : _trie.Walk(_state, _scratch, bits);
        }
        if (_state.CanEnd)
            foreach (int id in _eos)
            {
                if ((bits[id >> 6] & (1UL << (id & 63))) == 0) count++;
                bits[id >> 6] |= 1UL << (id & 63);
            }
        if (_cache.Count >= MaxCachedMasks) _cache.Clear();
        _cache[key] = (bits, count);
        _bits = bits;
        return count;
    }

    /// <summary>Moves past <paramref name="token"/>. False when the grammar does not allow it (the state is then unchanged).</summary>
    public bool Accept(int token)
    {
        if (!_active)
        {
            if (_bytesOf(token) is { Length: > 0 } text) Watch(text);
            return true;
        }
        if (_eos.Contains(token)) return _state.CanEnd;
        if (_bytesOf(token) is not { Length: > 0 } bytes) return false;
        _probe.CopyFrom(_state);
        if (!_probe.Advance(bytes)) return false;
        _state.CopyFrom(_probe);
        if (_trigger is not null && _state.IsDone) Deactivate();
        return true;
    }

    /// <summary>Lazy mode: free text; when it ends with the trigger, the grammar takes over (with the token's bytes past it).</summary>
    private void Watch(ReadOnlySpan<byte> text)
    {
        var trigger = _trigger!;
        _window.AddRange(text);
        int at = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window).IndexOf(trigger);
        if (at < 0)
        {
            if (_window.Count >= trigger.Length) _window.RemoveRange(0, _window.Count - (trigger.Length - 1));
            return;
        }
        var rest = _window.Skip(at + trigger.Length).ToArray();
        _window.Clear();
        _state.Reset();
        _active = true;
        if (rest.Length > 0 && !AcceptBytes(rest)) Deactivate(); // what followed the trigger is no value: stay free
        else if (_state.IsDone) Deactivate();
    }

    private void Deactivate()
    {
        _active = false;
        _state.Reset();
        _window.Clear();
    }

    /// <summary>Moves past text already in the output (bytes, not tokens). False, with the state unchanged, when the
    /// grammar does not allow it.</summary>
    public bool AcceptBytes(ReadOnlySpan<byte> bytes)
    {
        _probe.CopyFrom(_state);
        if (!_probe.Advance(bytes)) return false;
        _state.CopyFrom(_probe);
        return true;
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();
        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(byte[] b)
        {
            var h = new HashCode();
            h.AddBytes(b);
            return h.ToHashCode();
        }
    }
}
