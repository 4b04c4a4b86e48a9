using System.Text;
using System.Text.Json;

namespace Loom.Api.Completions;

/// <summary>A piece of a streamed answer with tools: text, the start of a call (its id and name), or a fragment of a
/// call's JSON arguments.</summary>
internal abstract record ToolStreamPiece;
internal sealed record TextPiece(string Text) : ToolStreamPiece;
internal sealed record CallStartedPiece(int Index, string Id, string Name) : ToolStreamPiece;
internal sealed record ArgumentsPiece(int Index, string Fragment) : ToolStreamPiece;

/// <summary>
/// Splits an answer into text and tool calls as its text arrives, so that a call streams argument by argument as
/// OpenAI streams it: the call's id and name as soon as its name is complete, then its <c>arguments</c> JSON in
/// fragments, exactly the characters of the argument value (what <see cref="ToolCalling.Parse"/> returns whole).
/// Forced calls (<c>required</c>, a named function) are the whole answer: one call object or an array of them. With
/// <c>auto</c>, text streams until a <c>&lt;tool_call&gt;</c> tag (a possible partial tag is held back), the call
/// follows, then its closing tag; text around calls is trimmed as <see cref="ToolCalling.Parse"/> trims it. A call cut
/// short (max_tokens) has streamed what it had; its finish reason says "length".
/// </summary>
internal sealed class ToolCallStream(bool forced)
{
    private enum Mode { Text, Call, AfterCall, BetweenCalls, Done }
    private enum Target { None, Key, Name, Arguments }

    private Mode _mode = forced ? Mode.BetweenCalls : Mode.Text;
    private bool _array;                       // forced: the calls are in a JSON array
    private readonly StringBuilder _held = new(); // text mode: a possible partial tag / trailing whitespace; after a call: a possible closing tag
    private bool _textStarted;                 // non-whitespace text was emitted (leading whitespace is dropped)

    // the call being read
    private int _depth;
    private bool _inString, _escape, _expectKey, _valueStarted;
    private Target _target;
    private readonly StringBuilder _key = new(), _name = new(), _pendingArgs = new();
    private string? _callName;
    private bool _argsDone;

    private readonly List<ToolStreamPiece> _out = [];
    private readonly StringBuilder _args = new(), _text = new();

    /// <summary>Calls started so far.</summary>
    public int Calls { get; private set; }

    /// <summary>The pieces that the new text completes, in order.</summary>
    public IReadOnlyList<ToolStreamPiece> Push(string text)
    {
        _out.Clear();
        foreach (var c in text) Step(c);
        if (_mode == Mode.Text) FlushText(final: false);
        FlushPieces();
        return [.. _out];
    }

    /// <summary>The end of the answer: held text that turned out not to be a tag.</summary>
    public IReadOnlyList<ToolStreamPiece> Finish()
    {
        _out.Clear();
        if (_mode == Mode.Text || _mode == Mode.AfterCall)
        {
            var rest = _held.ToString();
            _held.Clear();
            _mode = Mode.Text;
            EmitText(rest.TrimEnd());
        }
        FlushPieces();
        return [.. _out];
    }

    private void Step(char c)
    {
        switch (_mode)
        {
            case Mode.Text:
                _held.Append(c);
                if (EndsWith(_held, ToolCalling.OpenTag))
                {
                    _held.Length -= ToolCalling.OpenTag.Length;
                    FlushText(final: true);
                    BeginCall();
                }
                return;
            case Mode.AfterCall:
                _held.Append(c);
                var after = _held.ToString().TrimStart();
                if (after.Length == 0 || ToolCalling.CloseTag.StartsWith(after, StringComparison.Ordinal))
                {
                    if (after == ToolCalling.CloseTag) { _held.Clear(); _mode = Mode.Text; }
                    return;
                }
                // not the closing tag: the characters are text again
                var back = _held.ToString();
                _held.Clear();
                _mode = Mode.Text;
                foreach (var ch in back) Step(ch);
                return;
            case Mode.BetweenCalls:
                if (char.IsWhiteSpace(c) || c == ',') return;
                if (c == '[' && !_array && Calls == 0) { _array = true; return; }
                if (c == '{') { BeginCall(); CallChar(c); return; }
                _mode = Mode.Done; // ']' or anything the grammar would not allow
                return;
            case Mode.Call:
                CallChar(c);
                return;
            case Mode.Done:
                return;
        }
    }

    private void BeginCall()
    {
        _mode = Mode.Call;
        _depth = 0;
        _inString = _escape = _valueStarted = _argsDone = false;
        _expectKey = true;
        _target = Target.None;
        _key.Clear();
        _name.Clear();
        _pendingArgs.Clear();
        _callName = null;
    }

    /// <summary>One character of a call object <c>{"name": ..., "arguments": ...}</c>, tracking JSON depth and strings.</summary>
    private void CallChar(char c)
    {
        if (_depth == 0)
        {
            if (c == '{') { _depth = 1; _expectKey = true; }
            else if (!char.IsWhiteSpace(c)) _mode = forced ? Mode.Done : Mode.Text; // not a call: the rest is ignored (forced) or text
            return;
        }
        if (_inString)
        {
            Capture(c);
            if (_escape) _escape = false;
            else if (c == '\\') _escape = true;
            else if (c == '"')
            {
                _inString = false;
                if (_depth == 1) EndString();
            }
            return;
        }
        if (_depth == 1)
        {
            switch (c)
            {
                case '"':
                    _inString = true;
                    if (_expectKey) { _target = Target.Key; _key.Clear(); return; }
                    _valueStarted = true;
                    Capture(c);
                    return;
                case ':':
                    _expectKey = false;
                    _valueStarted = false;
                    _target = _key.ToString() switch { "name" => Target.Name, "arguments" => Target.Arguments, _ => Target.None };
                    return;
                case ',':
                    EndValue();
                    _expectKey = true;
                    return;
                case '}':
                    EndValue();
                    EndCall();
                    return;
                case '{' or '[':
                    _valueStarted = true;
                    Capture(c);
                    _depth = 2;
                    return;
                default:
                    if (char.IsWhiteSpace(c)) return; // between tokens: not part of any value's text
                    _valueStarted = true;
                    Capture(c);
                    return;
            }
        }
        Capture(c);
        if (c == '"') _inString = true;
        else if (c is '{' or '[') _depth++;
        else if (c is '}' or ']' && --_depth == 1) EndValue();
    }

    private void Capture(char c)
    {
        switch (_target)
        {
            case Target.Key: if (!(c == '"' && !_escape)) _key.Append(c); break;
            case Target.Name: _name.Append(c); break;
            case Target.Arguments when !_argsDone:
                if (_callName is null) _pendingArgs.Append(c);
                else _args.Append(c);
                break;
        }
    }

    private void EndString()
    {
        if (_target == Target.Key) return;
        if (_target == Target.Name) EndValue();
        else if (_target == Target.Arguments) EndValue();
    }

    private void EndValue()
    {
        if (_target == Target.Name && _callName is null && _name.Length > 0)
        {
            try { _callName = JsonSerializer.Deserialize<string>(_name.ToString()); }
            catch (JsonException) { _callName = _name.ToString().Trim('"'); }
            FlushPieces();
            _out.Add(new CallStartedPiece(Calls, Sse.NewId("call_"), _callName ?? ""));
            Calls++;
            _args.Append(_pendingArgs);
            _pendingArgs.Clear();
        }
        else if (_target == Target.Arguments && _valueStarted) _argsDone = true;
        _target = Target.None;
    }

    private void EndCall()
    {
        FlushPieces();
        _mode = forced ? Mode.BetweenCalls : Mode.AfterCall;
        _held.Clear();
        if (forced && !_array) _mode = Mode.Done;
    }

    /// <summary>Text mode: emits what cannot start the tag; trailing whitespace waits for more text (it is dropped before
    /// a call and at the end).</summary>
    private void FlushText(bool final)
    {
        var s = _held.ToString();
        int keep = 0;
        if (!final)
            for (int k = Math.Min(s.Length, ToolCalling.OpenTag.Length - 1); k > 0; k--)
                if (ToolCalling.OpenTag.StartsWith(s[^k..], StringComparison.Ordinal)) { keep = k; break; }
        var ready = s[..^keep];
        var trimmed = ready.TrimEnd();
        var whitespace = ready[trimmed.Length..];
        EmitText(trimmed);
        _held.Clear();
        if (!final) _held.Append(whitespace).Append(s[^keep..]);
    }

    private void EmitText(string s)
    {
        if (!_textStarted) s = s.TrimStart();
        if (s.Length == 0) return;
        _textStarted = true;
        if (_args.Length > 0) FlushPieces();
        _text.Append(s);
    }

    private void FlushPieces()
    {
        if (_text.Length > 0) { _out.Add(new TextPiece(_text.ToString())); _text.Clear(); }
        if (_args.Length > 0) { _out.Add(new ArgumentsPiece(Calls - 1, _args.ToString())); _args.Clear(); }
    }

    private static bool EndsWith(StringBuilder sb, string s)
    {
        if (sb.Length < s.Length) return false;
        for (int i = 0; i < s.Length; i++)
            if (sb[sb.Length - s.Length + i] != s[i]) return false;
        return true;
    }
}
