namespace Loom.Inference.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens".</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false);

/// <summary>Finds added tokens in input text, matched literally, leftmost first and longest first at a position.
/// lstrip/rstrip tokens absorb the whitespace next to them.</summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar; // candidates per first char, longest first

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>Splits text into (text piece, start offset) and added-token segments, in order.</summary>
    public void Split(string text, Action<string, int> onText, Action<AddedToken> onToken)
    {
        if (_byFirstChar.Count == 0)
        {
            if (text.Length > 0) onText(text, 0);
            return;
        }
        var pending = 0;
        for (var i = 0; i < text.Length;)
        {
            var token = MatchAt(text, i);
            if (token is null) { i++; continue; }
            var end = i;
            if (token.LStrip) while (end > pending && char.IsWhiteSpace(text[end - 1])) end--;
            if (end > pending) onText(text[pending..end], pending);
            onToken(token);
            i += token.Content.Length;
            if (token.RStrip) while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            pending = i;
        }
        if (pending < text.Length) onText(text[pending..], pending);
    }

    private AddedToken? MatchAt(string text, int i)
    {
        if (!_byFirstChar.TryGetValue(text[i], out var candidates)) return null;
        foreach (var token in candidates)
            if (i + token.Content.Length <= text.Length &&
                string.CompareOrdinal(text, i, token.Content, 0, token.Content.Length) == 0)
                return token;
        return null;
    }
}
