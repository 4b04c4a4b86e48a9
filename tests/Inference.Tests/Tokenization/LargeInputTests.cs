using System.Diagnostics;
using System.Text;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>Long inputs must encode in near-linear time (the merge loop is a priority queue, not a rescan per
/// merge); the bound is loose so a busy machine does not fail it, but a quadratic loop would.</summary>
public sealed class LargeInputTests
{
    [Fact]
    public void OneLongSentencePieceSegmentEncodesQuicklyAndRoundTrips()
    {
        var tok = GoldenTokenizers.Load("llama2-sp");
        var text = string.Concat(Enumerable.Repeat("tokenizer中a", 20_000)); // one segment, no spaces: one BPE word
        var watch = Stopwatch.StartNew();
        var ids = tok.Encode(text);
        watch.Stop();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"took {watch.Elapsed}");
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void LargeMixedTextEncodesAndRoundTripsOnEveryByteLevelTokenizer()
    {
        var text = new StringBuilder();
        foreach (var golden in GoldenTokenizers.Cases("gpt2-chatml")) text.Append(golden.Text).Append('\n');
        var block = text.ToString();
        var big = string.Concat(Enumerable.Repeat(block, 200));
        foreach (var name in new[] { "gpt2-chatml", "llama3", "qwen2" })
        {
            var tok = GoldenTokenizers.Load(name);
            var watch = Stopwatch.StartNew();
            var ids = tok.Encode(big);
            watch.Stop();
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"{name} took {watch.Elapsed}");
            // Encoding is per piece, so the big text's ids are the block's ids repeated.
            var once = tok.Encode(block);
            Assert.Equal(once.Length * 200, ids.Length);
            Assert.Equal(once, ids[..once.Length]);
        }
    }
}
