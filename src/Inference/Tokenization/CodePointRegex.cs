using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Inference.Tokenization;

/// <summary>Runs a pre-tokenizer regex over code points rather than UTF-16 units.
/// .NET's <c>\p{L}</c> and friends test one UTF-16 unit, so a letter outside the BMP (𝐀, 𠀀) would not be a
/// letter and an emoji's surrogate halves could be split apart. Before matching, each surrogate pair is
/// replaced by one stand-in BMP character of the same Unicode general category (so every category-based
/// class, <c>\s</c>, <c>\w</c> and <c>\d</c> answer the same), and match positions are mapped back.</summary>
internal sealed class CodePointRegex
{
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(10);
    private static readonly char[] StandIns = BuildStandIns(); // (30) one BMP character per UnicodeCategory

    private readonly Regex _regex;

    public CodePointRegex(string pattern)
    {
        _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, MatchTimeout);
    }

    public string Pattern => _regex.ToString();

    /// <summary>Calls <paramref name="onMatch"/> with (start, length) in <paramref name="text"/> for each match.</summary>
    public void Matches(string text, Action<int, int> onMatch)
    {
        if (!HasSurrogates(text))
        {
            foreach (var m in _regex.EnumerateMatches(text))
                if (m.Length > 0) onMatch(m.Index, m.Length);
            return;
        }
        var proxy = new StringBuilder(text.Length);
        var starts = new List<int>(text.Length + 1); // (proxy length + 1) index in text of each proxy char
        for (var i = 0; i < text.Length;)
        {
            starts.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                proxy.Append(StandIns[(int)CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))]);
                i += 2;
            }
            else
            {
                proxy.Append(text[i]);
                i++;
            }
        }
        starts.Add(text.Length);
        foreach (var m in _regex.EnumerateMatches(proxy.ToString()))
            if (m.Length > 0) onMatch(starts[m.Index], starts[m.Index + m.Length] - starts[m.Index]);
    }

    private static bool HasSurrogates(string text)
    {
        foreach (var c in text)
            if (char.IsSurrogate(c)) return true;
        return false;
    }

    /// <summary>For each category, the first BMP character from U+00A0 up whose case variants are not ASCII
    /// (so no case-insensitive literal in a pattern can match it by accident).</summary>
    private static char[] BuildStandIns()
    {
        var table = new char[30];
        for (var category = 0; category < table.Length; category++)
        {
            table[category] = '\uFFFD';
            for (int c = 0xA0; c < 0xFFFE; c++)
            {
                var ch = (char)c;
                if (char.IsSurrogate(ch) || (int)CharUnicodeInfo.GetUnicodeCategory(ch) != category) continue;
                if (char.ToUpperInvariant(ch) < 0x80 || char.ToLowerInvariant(ch) < 0x80 || c is 0x17F or 0x212A or 0x212B)
                    continue;
                table[category] = ch;
                break;
            }
        }
        return table;
    }
}
