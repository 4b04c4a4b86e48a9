using System.Text;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>Exact ids and decodes against the independent Python reference's golden files.</summary>
public sealed class GoldenIdsTests
{
    public static TheoryData<string, int> Cases => GoldenTokenizers.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeMatchesReferenceIds(string tokenizer, int index)
    {
        var golden = GoldenTokenizers.Cases(tokenizer)[index];
        var ids = GoldenTokenizers.Load(tokenizer).Encode(golden.Text);
        Assert.Equal(golden.Ids, ids);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeWithSpecialTokensMatchesReference(string tokenizer, int index)
    {
        var golden = GoldenTokenizers.Cases(tokenizer)[index];
        Assert.Equal(golden.IdsWithSpecial, GoldenTokenizers.Load(tokenizer).Encode(golden.Text, addSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DecodeMatchesReference(string tokenizer, int index)
    {
        var golden = GoldenTokenizers.Cases(tokenizer)[index];
        var tok = GoldenTokenizers.Load(tokenizer);
        Assert.Equal(golden.Decoded, tok.Decode(golden.Ids, skipSpecialTokens: false));
        Assert.Equal(golden.DecodedSkipSpecial, tok.Decode(golden.Ids, skipSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StreamingDecodeOneIdAtATimeEqualsFullDecode(string tokenizer, int index)
    {
        var golden = GoldenTokenizers.Cases(tokenizer)[index];
        var tok = GoldenTokenizers.Load(tokenizer);
        foreach (var skip in new[] { false, true })
        {
            var ids = tok.Encode(golden.Text, addSpecialTokens: true);
            var stream = tok.CreateStreamingDecoder(skip);
            var text = new StringBuilder();
            foreach (var id in ids)
            {
                var piece = stream.Push(id);
                Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), "a piece ended inside a surrogate pair");
                text.Append(piece);
            }
            text.Append(stream.Flush());
            Assert.Equal(tok.Decode(ids, skip), text.ToString());
        }
    }

    [Fact]
    public void ByteLevelTokenizersRoundTripEveryGoldenString()
    {
        foreach (var name in new[] { "gpt2-chatml", "llama3" })
        {
            var tok = GoldenTokenizers.Load(name);
            foreach (var golden in GoldenTokenizers.Cases(name))
                Assert.Equal(golden.Text, tok.Decode(tok.Encode(golden.Text), skipSpecialTokens: false));
        }
    }
}
