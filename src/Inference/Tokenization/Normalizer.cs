using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Inference.Tokenization;

/// <summary>The "normalizer" of tokenizer.json as a list of string rewrites, applied in order to each piece of
/// input between added tokens. Supported: Sequence, Prepend, Replace (String or Regex pattern), NFC, NFD,
/// NFKC, NFKD, Lowercase, Strip.</summary>
internal sealed class Normalizer
{
    private readonly List<Func<string, string>> _steps = [];

    public bool IsIdentity => _steps.Count == 0;

    public string Apply(string text)
    {
        foreach (var step in _steps) text = step(text);
        return text;
    }

    public static Normalizer Parse(JsonFile file, JsonElement? element)
    {
        var normalizer = new Normalizer();
        if (element is { } e) normalizer.Add(file, e, "normalizer");
        return normalizer;
    }

    private void Add(JsonFile file, JsonElement element, string where)
    {
        file.RequireObject(element, where);
        var type = file.RequiredString(element, "type", where);
        switch (type)
        {
            case "Sequence":
                var list = file.RequiredArray(element, "normalizers", where);
                var i = 0;
                foreach (var item in list.EnumerateArray()) Add(file, item, $"{where}.normalizers[{i++}]");
                break;
            case "Prepend":
                var prefix = file.RequiredString(element, "prepend", where);
                _steps.Add(s => s.Length == 0 ? s : prefix + s);
                break;
            case "Replace":
                var content = file.RequiredString(element, "content", where);
                var replace = ParsePattern(file, element, where);
                _steps.Add(s => replace(s, content));
                break;
            case "NFC": _steps.Add(s => IcuNormalization.Normalize(s, NormalizationForm.FormC)); break;
            case "NFD": _steps.Add(s => IcuNormalization.Normalize(s, NormalizationForm.FormD)); break;
            case "NFKC": _steps.Add(s => IcuNormalization.Normalize(s, NormalizationForm.FormKC)); break;
            case "NFKD": _steps.Add(s => IcuNormalization.Normalize(s, NormalizationForm.FormKD)); break;
            case "Lowercase": _steps.Add(s => s.ToLowerInvariant()); break;
            case "Strip":
                var left = file.OptionalBool(element, "strip_left", where, true);
                var right = file.OptionalBool(element, "strip_right", where, true);
                _steps.Add(s => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s);
                break;
            default:
                throw file.Fail($"'{where}.type' is \"{type}\", which this loader does not support " +
                                "(supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)");
        }
    }

    /// <summary>A Replace pattern: {"String": "..."} replaced literally, or {"Regex": "..."}.</summary>
    internal static Func<string, string, string> ParsePattern(JsonFile file, JsonElement element, string where)
    {
        var pattern = file.RequireObject(file.Required(element, "pattern", where), $"{where}.pattern");
        if (file.OptionalString(pattern, "String", $"{where}.pattern") is { } literal)
        {
            if (literal.Length == 0) throw file.Fail($"'{where}.pattern.String' is empty");
            return (s, content) => s.Replace(literal, content, StringComparison.Ordinal);
        }
        var regex = CompileRegex(file, file.RequiredString(pattern, "Regex", $"{where}.pattern"), $"{where}.pattern.Regex");
        return (s, content) => regex.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal));
    }

    internal static Regex CompileRegex(JsonFile file, string pattern, string where)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant, CodePointRegex.MatchTimeout);
        }
        catch (ArgumentException ex)
        {
            throw new TokenizerFormatException(file.Path, $"'{where}' is not a regex .NET can compile: {ex.Message}", ex);
        }
    }
}
