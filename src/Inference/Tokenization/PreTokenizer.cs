using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>The "pre_tokenizer" of tokenizer.json: splits normalized text into words for the BPE model.
/// Supported: ByteLevel (add_prefix_space, use_regex with the GPT-2 pattern), Split (String or Regex pattern,
/// behavior Isolated or Removed), Metaspace (replacement, prepend_scheme always/first/never or the older
/// add_prefix_space, split) and Sequence.</summary>
internal sealed class PreTokenizer
{
    public const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Lazy<CodePointRegex> Gpt2Regex = new(() => new CodePointRegex(Gpt2Pattern));

    /// <summary>A step maps one piece (and whether it begins the input) to smaller pieces.</summary>
    private delegate void Step(string piece, bool atStart, List<(string Piece, bool AtStart)> output);

    private readonly List<Step> _steps = [];

    /// <summary>True when a ByteLevel step maps words to the byte-level alphabet.</summary>
    public bool IsByteLevel { get; private set; }

    public List<string> Split(string text, bool atStart)
    {
        var pieces = new List<(string Piece, bool AtStart)> { (text, atStart) };
        foreach (var step in _steps)
        {
            var next = new List<(string, bool)>(pieces.Count * 2);
            foreach (var (piece, start) in pieces) step(piece, start, next);
            pieces = next;
        }
        var words = new List<string>(pieces.Count);
        foreach (var (piece, _) in pieces)
            if (piece.Length > 0) words.Add(piece);
        return words;
    }

    public static PreTokenizer Parse(JsonFile file, JsonElement? element)
    {
        var preTokenizer = new PreTokenizer();
        if (element is { } e) preTokenizer.Add(file, e, "pre_tokenizer");
        return preTokenizer;
    }

    private void Add(JsonFile file, JsonElement element, string where)
    {
        file.RequireObject(element, where);
        var type = file.RequiredString(element, "type", where);
        switch (type)
        {
            case "Sequence":
                var i = 0;
                foreach (var item in file.RequiredArray(element, "pretokenizers", where).EnumerateArray())
                    Add(file, item, $"{where}.pretokenizers[{i++}]");
                break;
            case "ByteLevel":
                AddByteLevel(file.OptionalBool(element, "add_prefix_space", where, false),
                    file.OptionalBool(element, "use_regex", where, true));
                break;
            case "Split":
                AddSplit(file, element, where);
                break;
            case "Metaspace":
                AddMetaspace(file, element, where);
                break;
            default:
                throw file.Fail($"'{where}.type' is \"{type}\", which this loader does not support " +
                                "(supported: Sequence, ByteLevel, Split, Metaspace)");
        }
    }

    private void AddByteLevel(bool addPrefixSpace, bool useRegex)
    {
        IsByteLevel = true;
        _steps.Add((piece, atStart, output) =>
        {
            if (addPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
            if (!useRegex)
            {
                output.Add((ByteLevelAlphabet.Encode(piece), atStart));
                return;
            }
            var first = atStart;
            Gpt2Regex.Value.Matches(piece, (start, length) =>
            {
                output.Add((ByteLevelAlphabet.Encode(piece.AsSpan(start, length)), first && start == 0));
            });
        });
    }

    private void AddSplit(JsonFile file, JsonElement element, string where)
    {
        if (file.OptionalBool(element, "invert", where, false))
            throw file.Fail($"'{where}.invert' is true, which this loader does not support");
        var behavior = file.RequiredString(element, "behavior", where);
        if (behavior is not ("Isolated" or "Removed"))
            throw file.Fail($"'{where}.behavior' is \"{behavior}\", which this loader does not support (supported: Isolated, Removed)");
        var keepMatches = behavior == "Isolated";
        var pattern = file.RequireObject(file.Required(element, "pattern", where), $"{where}.pattern");
        string regexText = file.OptionalString(pattern, "String", $"{where}.pattern") is { } literal
            ? System.Text.RegularExpressions.Regex.Escape(literal)
            : file.RequiredString(pattern, "Regex", $"{where}.pattern");
        Normalizer.CompileRegex(file, regexText, $"{where}.pattern"); // reports a bad pattern with the file name
        var regex = new CodePointRegex(regexText);
        _steps.Add((piece, atStart, output) =>
        {
            var position = 0;
            regex.Matches(piece, (start, length) =>
            {
                if (start > position) output.Add((piece[position..start], atStart && position == 0));
                if (keepMatches) output.Add((piece.Substring(start, length), atStart && start == 0));
                position = start + length;
            });
            if (position < piece.Length) output.Add((piece[position..], atStart && position == 0));
        });
    }

    private void AddMetaspace(JsonFile file, JsonElement element, string where)
    {
        var replacement = file.OptionalString(element, "replacement", where) ?? "\u2581";
        var scheme = file.OptionalString(element, "prepend_scheme", where)
                     ?? (file.OptionalBool(element, "add_prefix_space", where, true) ? "always" : "never");
        if (scheme is not ("always" or "first" or "never"))
            throw file.Fail($"'{where}.prepend_scheme' is \"{scheme}\" (expected always, first or never)");
        var split = file.OptionalBool(element, "split", where, true);
        _steps.Add((piece, atStart, output) =>
        {
            piece = piece.Replace(" ", replacement, StringComparison.Ordinal);
            if (piece.Length > 0 && (scheme == "always" || (scheme == "first" && atStart)) &&
                !piece.StartsWith(replacement, StringComparison.Ordinal))
                piece = replacement + piece;
            if (!split)
            {
                output.Add((piece, atStart));
                return;
            }
            var begin = 0;
            for (var i = replacement.Length > 0 ? piece.IndexOf(replacement, 1, StringComparison.Ordinal) : -1; i > 0;
                 i = piece.IndexOf(replacement, i + 1, StringComparison.Ordinal))
            {
                output.Add((piece[begin..i], atStart && begin == 0));
                begin = i;
            }
            output.Add((piece[begin..], atStart && begin == 0));
        });
    }
}
