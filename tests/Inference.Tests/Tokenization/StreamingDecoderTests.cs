using System.Text;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

public sealed class StreamingDecoderTests
{
    /// <summary>The ids of each UTF-8 byte of text as single byte-level tokens (no merges).</summary>
    private static int[] ByteTokens(ITokenizer tok, string text) =>
        Encoding.UTF8.GetBytes(text).Select(b => tok.TokenToId(ByteLevelAlphabet.ByteToChar(b).ToString())!.Value).ToArray();

    [Fact]
    public void CodePointSplitAcrossTokensIsHeldBackUntilComplete()
    {
        var tok = GoldenTokenizers.Load("gpt2-chatml");
        var ids = ByteTokens(tok, "a😀");
        var stream = tok.CreateStreamingDecoder();
        Assert.Equal("a", stream.Push(ids[0]));
        Assert.Equal("", stream.Push(ids[1]));
        Assert.Equal("", stream.Push(ids[2]));
        Assert.Equal("", stream.Push(ids[3]));
        Assert.Equal("😀", stream.Push(ids[4]));
        Assert.Equal("", stream.Flush());
    }

    [Fact]
    public void FlushTurnsADanglingPartialSequenceIntoOneReplacementCharacter()
    {
        var tok = GoldenTokenizers.Load("llama3");
        var ids = ByteTokens(tok, "x中")[..3]; // 'x' and the first two of three bytes
        var stream = tok.CreateStreamingDecoder();
        var text = string.Concat(ids.Select(stream.Push));
        Assert.Equal("x", text);
        Assert.Equal("\uFFFD", stream.Flush());
        Assert.Equal("x\uFFFD", tok.Decode(ids));
    }

    [Fact]
    public void InvalidBytesInTheMiddleBecomeReplacementCharactersLikeAFullDecode()
    {
        var tok = GoldenTokenizers.Load("gpt2-chatml");
        var bytes = new byte[] { 0x61, 0xE4, 0xB8, 0x62, 0xFF, 0xF0, 0x9F, 0x98, 0x80, 0x80 };
        var ids = bytes.Select(b => tok.TokenToId(ByteLevelAlphabet.ByteToChar(b).ToString())!.Value).ToArray();
        var stream = tok.CreateStreamingDecoder();
        var text = string.Concat(ids.Select(stream.Push)) + stream.Flush();
        Assert.Equal(tok.Decode(ids), text);
        Assert.Equal(Encoding.UTF8.GetString(bytes), text);
    }

    [Fact]
    public void SentencePieceByteFallbackTokensStreamToWholeCharacters()
    {
        var tok = GoldenTokenizers.Load("llama2-sp");
        var ids = tok.Encode("ok 🎈", addSpecialTokens: true); // the balloon is not in the vocabulary
        Assert.Contains(tok.TokenToId("<0xF0>")!.Value, ids);
        var stream = tok.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Push).ToList();
        pieces.Add(stream.Flush());
        Assert.Equal("ok 🎈", string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
    }

    [Fact]
    public void SentencePieceLeadingSpaceIsStrippedOnceAtTheStartOfTheStream()
    {
        var tok = GoldenTokenizers.Load("llama2-sp");
        var ids = tok.Encode("Hi there", addSpecialTokens: true);
        var stream = tok.CreateStreamingDecoder(skipSpecialTokens: true);
        var first = stream.Push(ids[0]); // BOS, skipped
        var rest = string.Concat(ids.Skip(1).Select(stream.Push)) + stream.Flush();
        Assert.Equal("", first);
        Assert.Equal("Hi there", rest);

        var keepSpecial = tok.CreateStreamingDecoder(skipSpecialTokens: false);
        var withBos = string.Concat(ids.Select(keepSpecial.Push)) + keepSpecial.Flush();
        Assert.Equal("<s> Hi there", withBos);
        Assert.Equal(tok.Decode(ids, skipSpecialTokens: false), withBos);
    }

    [Fact]
    public void IdsWithoutATokenDecodeToNothing()
    {
        var tok = GoldenTokenizers.Load("gpt2-chatml");
        var hello = tok.Encode("Hello");
        var stream = tok.CreateStreamingDecoder();
        Assert.Equal("", stream.Push(tok.VocabSize));
        Assert.Equal("", stream.Push(-1));
        Assert.Equal("Hello", tok.Decode([.. hello, tok.VocabSize + 10, int.MaxValue, int.MinValue]));
    }
}
