using System.Text;

namespace Loom.Inference.Tokenization;

/// <summary>Decodes one id at a time. Bytes are fed to a stateful UTF-8 decoder, so a code point split across
/// tokens is held back until complete; invalid bytes become U+FFFD exactly as in a one-shot decode, and
/// <see cref="Flush"/> turns a dangling partial sequence into U+FFFD. Leading-space stripping (SentencePiece
/// decoders) applies to the first bytes of the whole stream, as in a full decode.</summary>
internal sealed class StreamingDecoder(BpeTokenizer tokenizer, bool skipSpecialTokens) : IStreamingDecoder
{
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private int _spacesToStrip = tokenizer.LeadingSpacesToStrip;
    private bool _started;
    private char[] _chars = new char[64];

    public string Push(int tokenId)
    {
        var bytes = tokenizer.BytesOf(tokenId, skipSpecialTokens);
        if (bytes is null || bytes.Length == 0) return "";
        ReadOnlySpan<byte> span = bytes;
        while (!_started && span.Length > 0)
        {
            if (_spacesToStrip > 0 && span[0] == (byte)' ')
            {
                _spacesToStrip--;
                span = span[1..];
                continue;
            }
            _started = true;
        }
        return Convert(span, flush: false);
    }

    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = _utf8.GetCharCount(bytes, flush: false) + 8;
        if (_chars.Length < needed) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        var count = _utf8.GetChars(bytes, _chars, flush);
        return count == 0 ? "" : new string(_chars, 0, count);
    }
}
