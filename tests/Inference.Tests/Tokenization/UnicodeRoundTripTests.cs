using System.Text;

namespace Loom.Inference.Tests.Tokenization;

public sealed class UnicodeRoundTripTests
{
    public static readonly TheoryData<string> Texts =
    [
        "日本語のテキストと中文字符、한국어",
        "👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇯🇵 ❤️ 🧑🏿‍💻",
        "e\u0301 a\u0308\u0323 \u0915\u094D\u0937 Z\u0351\u0352\u0353",
        "𝐀𝐁𝐂 𠀀𠜎 𝟙𝟚𝟛 \U0001F600\U0001F601",
        "tabs\tand\r\nnewlines\n\n  double  spaces   end",
        "Ελληνικά, русский, עברית, العربية",
    ];

    [Theory]
    [MemberData(nameof(Texts))]
    public void ByteLevelTokenizersRoundTrip(string text)
    {
        foreach (var name in new[] { "gpt2-chatml", "llama3" })
        {
            var tok = GoldenTokenizers.Load(name);
            Assert.Equal(text, tok.Decode(tok.Encode(text)));
        }
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void Qwen2RoundTripsToTheNfcForm(string text)
    {
        var tok = GoldenTokenizers.Load("qwen2");
        var decoded = tok.Decode(tok.Encode(text));
        Assert.Equal(NormalizeNfc(text), decoded);
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void SentencePieceTokenizersRoundTripWithByteFallback(string text)
    {
        foreach (var name in new[] { "llama2-sp", "mistral-metaspace" })
        {
            var tok = GoldenTokenizers.Load(name);
            Assert.Equal(text, tok.Decode(tok.Encode(text, addSpecialTokens: true)));
        }
    }

    [Fact]
    public void LoneSurrogatesEncodeAsReplacementCharacter()
    {
        // Rule: an unpaired UTF-16 surrogate in the input is treated as U+FFFD (UTF-8 EF BF BD).
        foreach (var name in GoldenTokenizers.Names)
        {
            var tok = GoldenTokenizers.Load(name);
            foreach (var (broken, repaired) in new[]
                     {
                         ("a\uD800b", "a\uFFFDb"), ("\uDC00x", "\uFFFDx"), ("end\uD83D", "end\uFFFD"),
                         ("\uDE00\uD83D", "\uFFFD\uFFFD"), ("ok 😀\uD800", "ok 😀\uFFFD"),
                     })
            {
                Assert.Equal(tok.Encode(repaired), tok.Encode(broken));
                Assert.Equal(repaired, tok.Decode(tok.Encode(broken, addSpecialTokens: true)));
            }
        }
    }

    [Fact]
    public void RandomUnicodeRoundTripsThroughEveryByteLevelTokenizer()
    {
        var random = new Random(20261122);
        int[][] ranges = [[0x20, 0x7E], [0xA0, 0x24F], [0x300, 0x36F], [0x4E00, 0x9FFF], [0xAC00, 0xD7A3], [0x1F300, 0x1FAFF], [0x20000, 0x2A6DF], [0x9, 0xD]];
        var gpt2 = GoldenTokenizers.Load("gpt2-chatml");
        var llama3 = GoldenTokenizers.Load("llama3");
        for (var trial = 0; trial < 200; trial++)
        {
            var text = new StringBuilder();
            for (var i = random.Next(1, 40); i > 0; i--)
            {
                var range = ranges[random.Next(ranges.Length)];
                text.Append(char.ConvertFromUtf32(random.Next(range[0], range[1] + 1)));
            }
            var s = text.ToString();
            Assert.Equal(s, gpt2.Decode(gpt2.Encode(s)));
            Assert.Equal(s, llama3.Decode(llama3.Encode(s)));
        }
    }

    private static string NormalizeNfc(string text) =>
        Loom.Inference.Tokenization.IcuNormalization.Normalize(text, NormalizationForm.FormC);
}
