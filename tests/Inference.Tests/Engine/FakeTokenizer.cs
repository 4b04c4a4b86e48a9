using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Engine;

/// <summary>Token id → one letter; enough to test text streaming without the real tokenizer.</summary>
internal sealed class FakeTokenizer(int vocab, params int[] eos) : ITokenizer
{
    public int VocabSize => vocab;
    public int? BosTokenId => null;
    public IReadOnlyList<int> EosTokenIds => eos;
    public static string Piece(int id) => ((char)('a' + id % 26)).ToString();
    public int[] Encode(string text, bool addSpecialTokens = false) => text.Select(c => (int)(c - 'a')).ToArray();
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true) => string.Concat(ids.ToArray().Select(Piece));
    public IStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new Streaming();

    private sealed class Streaming : IStreamingDecoder
    {
        public string Push(int tokenId) => Piece(tokenId);
        public string Flush() => "";
    }
}
