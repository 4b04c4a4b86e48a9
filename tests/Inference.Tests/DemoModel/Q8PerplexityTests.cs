using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.DemoModel;

/// <summary>models/loom-demo quantized to int8 at load (<see cref="WeightFormat.Q8"/>) against the same model in bf16
/// (as saved): the perplexity on the held-out WordNet synsets (never trained on; eval/heldout.json) within 1%.</summary>
public sealed class Q8PerplexityTests(ITestOutputHelper log)
{
    [Fact]
    public void HeldOutPerplexityIsWithinOnePercentOfBf16()
    {
        using var bf16 = DemoModelTests.OpenDemo(WeightFormat.BF16);
        using var q8 = DemoModelTests.OpenDemo(WeightFormat.Q8);
        Assert.All(q8.Weights.Layers, l => Assert.Equal(WeightType.Q8, l.Down.Weight.Type));   // 688 columns: a partial block
        Assert.Equal(WeightType.Q8, q8.Weights.LmHead.Type);
        var (lossBf16, n) = DemoModelTests.HeldOutLoss(bf16);
        var (lossQ8, nQ8) = DemoModelTests.HeldOutLoss(q8);
        Assert.Equal(n, nQ8);
        double pplBf16 = Math.Exp(lossBf16), pplQ8 = Math.Exp(lossQ8);
        log.WriteLine($"held-out perplexity over {n} tokens: bf16 {pplBf16:F4}, q8 {pplQ8:F4} ({(pplQ8 / pplBf16 - 1) * 100:+0.000;-0.000}%)");
        Assert.True(Math.Abs(pplQ8 / pplBf16 - 1) <= 0.01, $"q8 perplexity {pplQ8} vs bf16 {pplBf16}");
        Assert.NotEqual(lossBf16, lossQ8);   // the q8 model really is a different model
    }
}
