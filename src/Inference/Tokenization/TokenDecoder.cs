using System.Text;
using System.Text.Json;

namespace Loom.Inference.Tokenization;

/// <summary>The "decoder" of tokenizer.json, reduced to what it does to bytes: each token id maps to a fixed byte
/// string, and the decoded text is the UTF-8 decoding of their concatenation, with at most
/// <see cref="LeadingSpacesToStrip"/> leading spaces removed from the very start of the output.
/// Supported: ByteLevel (token characters are bytes in disguise); Metaspace; and Sequence of Replace,
/// ByteFallback (<c>&lt;0xXX&gt;</c> tokens are single bytes), Fuse, Strip (leading only) and ByteLevel.</summary>
internal sealed class TokenDecoder
{
    public bool ByteLevel { get; private set; }
    public bool ByteFallback { get; private set; }
    public int LeadingSpacesToStrip { get; private set; }
    private readonly List<(string From, string To)> _replacements = [];

    public static TokenDecoder Parse(JsonFile file, JsonElement? element)
    {
        var decoder = new TokenDecoder();
        if (element is { } e) decoder.Add(file, e, "decoder", topLevel: true);
        return decoder;
    }

    private void Add(JsonFile file, JsonElement element, string where, bool topLevel)
    {
        file.RequireObject(element, where);
        var type = file.RequiredString(element, "type", where);
        switch (type)
        {
            case "Sequence" when topLevel:
                var i = 0;
                foreach (var item in file.RequiredArray(element, "decoders", where).EnumerateArray())
                    Add(file, item, $"{where}.decoders[{i++}]", topLevel: false);
                break;
            case "ByteLevel":
                ByteLevel = true;
                break;
            case "ByteFallback":
                ByteFallback = true;
                break;
            case "Fuse":
                break;
            case "Replace":
                var pattern = file.RequireObject(file.Required(element, "pattern", where), $"{where}.pattern");
                var from = file.OptionalString(pattern, "String", $"{where}.pattern")
                           ?? throw file.Fail($"'{where}.pattern' must be a String pattern (Regex patterns are not supported in decoders)");
                _replacements.Add((from, file.RequiredString(element, "content", where)));
                break;
            case "Strip":
                var content = file.RequiredString(element, "content", where);
                var start = file.OptionalInt(element, "start", where) ?? 0;
                var stop = file.OptionalInt(element, "stop", where) ?? 0;
                if (content != " " || stop != 0 || start is < 0 or > 16)
                    throw file.Fail($"'{where}' strips \"{content}\" start {start} stop {stop}; only leading spaces (stop 0) are supported");
                LeadingSpacesToStrip = start;
                break;
            case "Metaspace":
                var replacement = file.OptionalString(element, "replacement", where) ?? "\u2581";
                var scheme = file.OptionalString(element, "prepend_scheme", where)
                             ?? (file.OptionalBool(element, "add_prefix_space", where, true) ? "always" : "never");
                _replacements.Add((replacement, " "));
                LeadingSpacesToStrip = scheme == "never" ? 0 : 1;
                break;
            default:
                throw file.Fail($"'{where}.type' is \"{type}\", which this loader does not support " +
                                "(supported: ByteLevel, Metaspace, Sequence of Replace/ByteFallback/Fuse/Strip)");
        }
    }

    /// <summary>The bytes one vocabulary token contributes to the output.</summary>
    public byte[] TokenBytes(string token)
    {
        if (ByteFallback && token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>' &&
            byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out var single))
            return [single];
        if (ByteLevel)
        {
            var bytes = new byte[token.Length];
            var allBytes = true;
            for (var i = 0; i < token.Length && allBytes; i++) allBytes = ByteLevelAlphabet.TryCharToByte(token[i], out bytes[i]);
            if (allBytes) return bytes;
        }
        foreach (var (from, to) in _replacements) token = token.Replace(from, to, StringComparison.Ordinal);
        return Encoding.UTF8.GetBytes(token);
    }
}
