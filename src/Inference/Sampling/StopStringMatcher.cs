namespace Loom.Inference.Sampling;

/// <summary>Watches streamed text for stop strings. Text that could still be the start of a stop string is
/// held back until it is known not to be one, so a client never sees any part of a stop string.</summary>
public sealed class StopStringMatcher(IReadOnlyList<string> stops)
{
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds a piece of text; returns the text that is safe to emit now.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        if (stops.Count == 0) return piece;
        string text = _pending + piece;
        int cut = -1;
        foreach (var s in stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending = "";
            return text[..cut];
        }
        // hold back the longest suffix that is a proper prefix of some stop string
        int hold = 0;
        foreach (var s in stops)
            for (int len = Math.Min(s.Length - 1, text.Length); len > hold; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(s.AsSpan(0, len))) { hold = len; break; }
        _pending = text[(text.Length - hold)..];
        return text[..(text.Length - hold)];
    }

    /// <summary>End of stream: whatever was held back is not a stop string.</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }
}
