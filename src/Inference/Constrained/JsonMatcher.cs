using System.Runtime.InteropServices;

namespace Loom.Inference.Constrained;

/// <summary>
/// A pushdown automaton over UTF-8 bytes that accepts exactly the JSON texts a <see cref="JsonGrammar"/> allows (objects
/// with their declared properties in declared order, each optional one possibly left out). Its whole state is a small
/// stack of value-type frames, so copying it (the token trie walk copies it at every node) is a short memcpy, and the
/// stack's bytes are a key for caching token masks. The text starts with the value itself (no leading whitespace) and
/// ends with it; whitespace between tokens is allowed up to a newline and two spaces of indentation per level (at
/// most <see cref="MaxWhitespace"/> bytes) per gap, and numbers to <see cref="MaxDigits"/> digits per part, so every output
/// makes progress toward its end.
/// </summary>
public sealed class JsonMatcher
{
    public const int MaxDepth = 64;
    public const int MaxWhitespace = 20;
    public const int MaxDigits = 18;

    private enum Kind : byte { Value, Object, Key, Array, String, Number, Literals, Tagged }

    /// <summary>One level of the stack. Field use by kind: Object (Stage, A = next property, C = current property or -1
    /// for a free key), Key (B = candidate properties, A = bytes matched), Array (Stage, A = items when bounded), String
    /// (Stage, A = characters when bounded), Number (Stage, A = digits in the current part), Literals (B = candidates,
    /// A = bytes matched).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Frame
    {
        public Kind Kind;
        public byte Stage;
        public byte Ws;
        public int Node;
        public int A;
        public int C;
        public ulong B;
    }

    private readonly JsonGrammar _grammar;
    private readonly GrammarNode[] _nodes;
    private readonly int[][] _unionByFirstByte; // (node)[256] → alternative node, -1 when the byte starts none
    private readonly Frame[] _stack = new Frame[MaxDepth];
    private int _depth;

    public JsonMatcher(JsonGrammar grammar)
    {
        _grammar = grammar;
        _nodes = [.. grammar.Nodes];
        _unionByFirstByte = new int[_nodes.Length][];
        for (int i = 0; i < _nodes.Length; i++)
        {
            if (_nodes[i].Kind != GrammarNodeKind.Union) continue;
            var table = new int[256];
            Array.Fill(table, -1);
            foreach (int alt in _nodes[i].Alternatives)
                foreach (byte b in grammar.FirstBytes(alt)) table[b] = alt;
            _unionByFirstByte[i] = table;
        }
        Reset();
    }

    private JsonMatcher(JsonMatcher other)
    {
        _grammar = other._grammar;
        _nodes = other._nodes;
        _unionByFirstByte = other._unionByFirstByte;
        CopyFrom(other);
    }

    public JsonGrammar Grammar => _grammar;

    /// <summary>A matcher sharing this one's grammar tables, in the same state.</summary>
    public JsonMatcher Clone() => new(this);

    public void Reset()
    {
        _depth = 1;
        _stack[0] = new Frame { Kind = Kind.Value, Node = _grammar.Root };
    }

    public void CopyFrom(JsonMatcher other)
    {
        _depth = other._depth;
        other._stack.AsSpan(0, _depth).CopyTo(_stack);
    }

    /// <summary>The whole value has been read; nothing more is accepted.</summary>
    public bool IsDone => _depth == 0;

    /// <summary>The text so far is a complete value (possibly one that could still go on, such as a number).</summary>
    public bool CanEnd => _depth == 0 || (_depth == 1 && Completable(in _stack[0]));

    /// <summary>The state as bytes: equal states give equal keys (used to cache token masks).</summary>
    public ReadOnlySpan<byte> StateKey => MemoryMarshal.AsBytes(_stack.AsSpan(0, _depth));

    /// <summary>The top of the stack is inside a string, between characters: <paramref name="room"/> is how many more
    /// characters its length bound allows (int.MaxValue when unbounded). Every plain-text token fits the state there.</summary>
    public bool InPlainString(out int room)
    {
        room = 0;
        if (_depth == 0) return false;
        ref Frame f = ref _stack[_depth - 1];
        if (f.Kind != Kind.String || f.Stage != 0) return false;
        var n = _nodes[f.Node];
        room = n.HasStringBounds ? n.MaxLength - f.A : int.MaxValue;
        return true;
    }

    public bool Advance(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes) if (!Advance(b)) return false;
        return true;
    }

    /// <summary>Takes one byte; false (state then undefined: copy a good state back) when the grammar does not allow it.</summary>
    public bool Advance(byte b)
    {
        while (_depth > 0)
        {
            ref Frame f = ref _stack[_depth - 1];
            switch (f.Kind)
            {
                case Kind.Value:
                    if (IsWhitespace(b)) return _depth > 1 && Whitespace(ref f); // the output starts with the value itself
                    return Start(ref f, f.Node, b);
                case Kind.Object:
                    return ObjectByte(ref f, b);
                case Kind.Key:
                    return KeyByte(ref f, b);
                case Kind.Array:
                    return ArrayByte(ref f, b);
                case Kind.String:
                    return StringByte(ref f, b);
                case Kind.Number:
                    if (NumberByte(ref f, b)) return true;
                    break; // not a number byte: the number ends here if it may
                case Kind.Literals:
                    if (LiteralByte(ref f, b)) return true;
                    break;
                case Kind.Tagged:
                    return TaggedByte(ref f, b);
            }
            if (!Completable(in f)) return false;
            Pop(); // a completed number or literal; the byte belongs to the enclosing value
        }
        return false;
    }

    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';

    /// <summary>Whitespace in a gap between tokens: enough for a newline and two spaces of indentation per level of
    /// nesting (pretty-printed JSON), no more, so that a model drawn to whitespace still makes progress.</summary>
    private bool Whitespace(ref Frame f)
    {
        if (f.Ws >= Math.Min(MaxWhitespace, 1 + 2 * _depth)) return false;
        f.Ws++;
        return true;
    }

    private bool Completable(in Frame f) => f.Kind switch
    {
        Kind.Number => f.Stage is 2 or 3 or 5 or 8,
        Kind.Literals => AnyLiteralEndsAt(in f),
        _ => false,
    };

    private bool AnyLiteralEndsAt(in Frame f)
    {
        var literals = _nodes[f.Node].Literals;
        for (ulong m = f.B; m != 0; m &= m - 1)
            if (literals[System.Numerics.BitOperations.TrailingZeroCount(m)].Length == f.A) return true;
        return false;
    }

    /// <summary>Turns <paramref name="f"/> (a Value frame, or a fresh slot) into the frame of <paramref name="node"/>'s
    /// value starting with <paramref name="b"/>.</summary>
    private bool Start(ref Frame f, int node, byte b)
    {
        var n = _nodes[node];
        switch (n.Kind)
        {
            case GrammarNodeKind.Union:
                int alt = _unionByFirstByte[node][b];
                return alt >= 0 && Start(ref f, alt, b);
            case GrammarNodeKind.Any:
                int target = b switch
                {
                    (byte)'{' => _grammar.AnyObject,
                    (byte)'[' => _grammar.AnyArray,
                    (byte)'"' => _grammar.AnyString,
                    (byte)'t' or (byte)'f' or (byte)'n' => _grammar.AnyLiteral,
                    (byte)'-' or (>= (byte)'0' and <= (byte)'9') => _grammar.AnyNumber,
                    _ => -1,
                };
                return target >= 0 && Start(ref f, target, b);
            case GrammarNodeKind.Object:
                if (b != '{') return false;
                f = new Frame { Kind = Kind.Object, Node = node, Stage = 0, A = 0, C = -1 };
                return true;
            case GrammarNodeKind.Array:
                if (b != '[') return false;
                f = new Frame { Kind = Kind.Array, Node = node, Stage = 0 };
                return true;
            case GrammarNodeKind.String:
                if (b != '"') return false;
                f = new Frame { Kind = Kind.String, Node = node, Stage = 0 };
                return true;
            case GrammarNodeKind.Number or GrammarNodeKind.Integer:
                f = new Frame { Kind = Kind.Number, Node = node, Stage = 0 };
                return NumberByte(ref f, b);
            case GrammarNodeKind.Tagged:
                ulong prefixes = 0;
                for (int i = 0; i < n.Literals.Length; i++) if (n.Literals[i][0] == b) prefixes |= 1UL << i;
                if (prefixes == 0) return false;
                f = new Frame { Kind = Kind.Tagged, Node = node, A = 1, B = prefixes };
                return true;
            case GrammarNodeKind.Literals:
                ulong mask = 0;
                for (int i = 0; i < n.Literals.Length; i++) if (n.Literals[i][0] == b) mask |= 1UL << i;
                if (mask == 0) return false;
                f = new Frame { Kind = Kind.Literals, Node = node, A = 1, B = mask };
                return true;
        }
        return false;
    }

    private bool Push(in Frame f)
    {
        if (_depth == MaxDepth) return false;
        _stack[_depth++] = f;
        return true;
    }

    /// <summary>Ends the top value and moves its container past it.</summary>
    private void Pop()
    {
        _depth--;
        if (_depth == 0) return;
        ref Frame parent = ref _stack[_depth - 1];
        parent.Ws = 0;
        if (parent.Kind == Kind.Object) parent.Stage = parent.Stage == 1 ? (byte)2 : (byte)4;
        else if (parent.Kind == Kind.Tagged) parent.Stage = 2;
        else if (parent.Kind == Kind.Array)
        {
            parent.Stage = 2;
            if (_nodes[parent.Node].HasItemBounds) parent.A++;
        }
    }

    // Object stages: 0 after '{', 1 in a key (a Key or String frame above), 2 after a key, 3 in a value (a frame
    // above), 4 after a value, 5 after ','.
    private bool ObjectByte(ref Frame f, byte b)
    {
        var n = _nodes[f.Node];
        if (IsWhitespace(b) && f.Stage is 0 or 2 or 4 or 5) return Whitespace(ref f);
        switch (f.Stage)
        {
            case 0 or 5 when b == '"':
                f.Ws = 0;
                if (n.Properties.Length == 0)
                {
                    if (n.FreeValue < 0) return false;
                    f.Stage = 1;
                    f.C = -1;
                    return Push(new Frame { Kind = Kind.String, Node = _grammar.AnyString });
                }
                ulong candidates = KeyCandidates(n, f.A);
                if (candidates == 0) return false;
                f.Stage = 1;
                return Push(new Frame { Kind = Kind.Key, Node = f.Node, B = candidates });
            case 0 or 4 when b == '}':
                if (RequiredLeft(n, f.A)) return false;
                Pop();
                return true;
            case 2 when b == ':':
                f.Stage = 3;
                f.Ws = 0;
                return Push(new Frame { Kind = Kind.Value, Node = f.C >= 0 ? n.Properties[f.C].Value : n.FreeValue });
            case 4 when b == ',':
                if (n.Properties.Length > 0 && KeyCandidates(n, f.A) == 0) return false;
                f.Stage = 5;
                f.Ws = 0;
                return true;
        }
        return false;
    }

    /// <summary>Properties that may come next: from <paramref name="next"/> on, up to and including the first required one.</summary>
    private static ulong KeyCandidates(GrammarNode n, int next)
    {
        ulong mask = 0;
        for (int i = next; i < n.Properties.Length; i++)
        {
            mask |= 1UL << i;
            if (n.Properties[i].Required) break;
        }
        return mask;
    }

    private static bool RequiredLeft(GrammarNode n, int next)
    {
        for (int i = next; i < n.Properties.Length; i++) if (n.Properties[i].Required) return true;
        return false;
    }

    private bool KeyByte(ref Frame f, byte b)
    {
        var props = _nodes[f.Node].Properties;
        ulong next = 0;
        int ended = -1;
        for (ulong m = f.B; m != 0; m &= m - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(m);
            var tail = props[i].KeyTail;
            if (tail.Length > f.A && tail[f.A] == b)
            {
                next |= 1UL << i;
                if (tail.Length == f.A + 1) ended = i; // the closing quote: unescaped only at the end of an encoded name
            }
        }
        if (next == 0) return false;
        if (ended < 0)
        {
            f.B = next;
            f.A++;
            return true;
        }
        _depth--;
        ref Frame obj = ref _stack[_depth - 1];
        obj.Stage = 2;
        obj.C = ended;
        obj.A = ended + 1;
        return true;
    }

    // Array stages: 0 after '[', 1 in an item (a frame above), 2 after an item, 3 after ','.
    private bool ArrayByte(ref Frame f, byte b)
    {
        var n = _nodes[f.Node];
        if (IsWhitespace(b) && f.Stage is 0 or 2 or 3) return Whitespace(ref f);
        if (b == ']' && f.Stage is 0 or 2)
        {
            if (f.A < n.MinItems) return false;
            Pop();
            return true;
        }
        if (b == ',' && f.Stage == 2)
        {
            if (n.HasItemBounds && f.A >= n.MaxItems) return false;
            f.Stage = 3;
            f.Ws = 0;
            return true;
        }
        if (f.Stage is 0 or 3)
        {
            if (n.MaxItems == 0) return false;
            f.Stage = 1;
            f.Ws = 0;
            if (_depth == MaxDepth) return false;
            ref Frame item = ref _stack[_depth++];
            item = new Frame { Kind = Kind.Value, Node = n.Items };
            return Start(ref item, n.Items, b);
        }
        return false;
    }

    // String stages: 0 plain, 1 after '\', 10-13 after "\u" and that many hex digits, 21-23 that many UTF-8 continuation bytes due,
    // 24-27 the restricted second byte after E0, ED, F0 and F4.
    private bool StringByte(ref Frame f, byte b)
    {
        var n = _nodes[f.Node];
        bool bounded = n.HasStringBounds;
        switch (f.Stage)
        {
            case 0:
                if (b == '"')
                {
                    if (bounded && f.A < n.MinLength) return false;
                    Pop();
                    return true;
                }
                if (b < 0x20 || (b >= 0x80 && b < 0xC2) || b > 0xF4) return false;
                if (bounded)
                {
                    if (f.A >= n.MaxLength) return false;
                    f.A++;
                }
                f.Stage = b switch
                {
                    (byte)'\\' => 1, < 0x80 => 0, < 0xE0 => 21, 0xE0 => 24, 0xED => 25, < 0xF0 => 22, 0xF0 => 26, 0xF4 => 27, _ => 23,
                };
                return true;
            case 1:
                if (b == 'u') { f.Stage = 10; return true; }
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t') { f.Stage = 0; return true; }
                return false;
            case >= 10 and <= 13:
                if (!char.IsAsciiHexDigit((char)b)) return false;
                f.Stage = f.Stage == 13 ? (byte)0 : (byte)(f.Stage + 1);
                return true;
            case >= 24: // the second byte of a sequence whose lead limits it (no overlong forms, surrogates or code points past U+10FFFF)
                var (low, high, then) = f.Stage switch { 24 => (0xA0, 0xBF, 21), 25 => (0x80, 0x9F, 21), 26 => (0x90, 0xBF, 22), _ => (0x80, 0x8F, 22) };
                if (b < low || b > high) return false;
                f.Stage = (byte)then;
                return true;
            default: // 21-23
                if (b is < 0x80 or > 0xBF) return false;
                f.Stage = f.Stage == 21 ? (byte)0 : (byte)(f.Stage - 1);
                return true;
        }
    }

    // Number stages: 0 start, 1 after '-', 2 after a leading 0, 3 in integer digits, 4 after '.', 5 in fraction digits,
    // 6 after 'e', 7 after the exponent's sign, 8 in exponent digits. Completable in 2, 3, 5 and 8.
    private bool NumberByte(ref Frame f, byte b)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        bool integer = _nodes[f.Node].Kind == GrammarNodeKind.Integer;
        switch (f.Stage)
        {
            case 0 when b == '-': f.Stage = 1; return true;
            case 0 or 1 when digit: f.Stage = b == '0' ? (byte)2 : (byte)3; f.A = 1; return true;
            case 3 or 5 or 8 when digit:
                if (f.A >= (f.Stage == 8 ? 3 : MaxDigits)) return false;
                f.A++;
                return true;
            case 2 or 3 when b == '.' && !integer: f.Stage = 4; return true;
            case 2 or 3 or 5 when (b == 'e' || b == 'E') && !integer: f.Stage = 6; return true;
            case 4 when digit: f.Stage = 5; f.A = 1; return true;
            case 6 when b is (byte)'+' or (byte)'-': f.Stage = 7; return true;
            case 6 or 7 when digit: f.Stage = 8; f.A = 1; return true;
        }
        return false;
    }

    // Tagged stages: 0 matching the prefixes (B candidates, A bytes), 1 in the value (a frame above; C = the prefix),
    // 2 after the value, expecting '}'.
    private bool TaggedByte(ref Frame f, byte b)
    {
        var n = _nodes[f.Node];
        if (f.Stage == 2)
        {
            if (IsWhitespace(b)) return Whitespace(ref f);
            if (b != '}') return false;
            Pop();
            return true;
        }
        ulong next = 0;
        int ended = -1;
        for (ulong m = f.B; m != 0; m &= m - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(m);
            var prefix = n.Literals[i];
            if (prefix.Length > f.A && prefix[f.A] == b)
            {
                next |= 1UL << i;
                if (prefix.Length == f.A + 1) ended = i;
            }
        }
        if (next == 0) return false;
        f.B = next;
        f.A++;
        if (ended < 0) return true;
        f.Stage = 1;
        f.C = ended;
        return Push(new Frame { Kind = Kind.Value, Node = n.Alternatives[ended] });
    }

    private bool LiteralByte(ref Frame f, byte b)
    {
        var literals = _nodes[f.Node].Literals;
        ulong next = 0;
        for (ulong m = f.B; m != 0; m &= m - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(m);
            if (literals[i].Length > f.A && literals[i][f.A] == b) next |= 1UL << i;
        }
        if (next == 0) return false;
        f.B = next;
        f.A++;
        // A literal that ends here and that no other candidate extends is complete now: close it at once, so a
        // string or object literal ends the value without waiting for the next byte.
        bool longer = false;
        for (ulong m = next; m != 0 && !longer; m &= m - 1)
            longer = literals[System.Numerics.BitOperations.TrailingZeroCount(m)].Length > f.A;
        if (!longer) Pop();
        return true;
    }
}
