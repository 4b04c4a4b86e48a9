using Loom.Inference.Sampling;

namespace Loom.Inference.Tests.Sampling;

public sealed class SamplingTests
{
    private static readonly float[] Probs = [0.5f, 0.3f, 0.15f, 0.05f];
    private static float[] Logits => Probs.Select(p => MathF.Log(p) + 3).ToArray(); // shift: softmax ignores it

    private static int[] Draw(SamplingParams p, float[] logits, int count)
    {
        var s = new Sampler(p, logits.Length);
        return Enumerable.Range(0, count).Select(_ => s.Sample(logits)).ToArray();
    }

    [Fact]
    public void GreedyPicksTheArgmax()
    {
        Assert.All(Draw(new SamplingParams { Temperature = 0 }, Logits, 20), t => Assert.Equal(0, t));
        Assert.All(Draw(new SamplingParams { TopK = 1, Temperature = 5 }, [1f, 9f, 3f], 20), t => Assert.Equal(1, t));
    }

    [Fact]
    public void SameSeedSameTokensDifferentSeedDifferentTokens()
    {
        var flat = new float[50];
        var a = Draw(new SamplingParams { Seed = 7 }, flat, 100);
        var b = Draw(new SamplingParams { Seed = 7 }, flat, 100);
        var c = Draw(new SamplingParams { Seed = 8 }, flat, 100);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void FrequenciesFollowTheDistribution()
    {
        var draws = Draw(new SamplingParams { Seed = 1 }, Logits, 20000);
        for (int i = 0; i < Probs.Length; i++)
            Assert.InRange(draws.Count(d => d == i) / 20000.0, Probs[i] - 0.015, Probs[i] + 0.015);
        // temperature 0.5 squares the odds: p ∝ p², token 0 gets 0.25 / (0.25+0.09+0.0225+0.0025) ≈ 0.685
        var cold = Draw(new SamplingParams { Seed = 2, Temperature = 0.5f }, Logits, 20000);
        Assert.InRange(cold.Count(d => d == 0) / 20000.0, 0.665, 0.705);
    }

    [Fact]
    public void TopKTopPMinPFilter()
    {
        Assert.Equal([0, 1], Draw(new SamplingParams { Seed = 3, TopK = 2 }, Logits, 2000).Distinct().Order());
        // 0.5 < 0.7 ≤ 0.5 + 0.3: the nucleus is {0, 1}
        Assert.Equal([0, 1], Draw(new SamplingParams { Seed = 4, TopP = 0.7f }, Logits, 2000).Distinct().Order());
        // threshold 0.5 · 0.5 = 0.25 keeps {0, 1}
        Assert.Equal([0, 1], Draw(new SamplingParams { Seed = 5, MinP = 0.5f }, Logits, 2000).Distinct().Order());
        Assert.Equal([0, 1, 2, 3], Draw(new SamplingParams { Seed = 6 }, Logits, 2000).Distinct().Order());
        // top-p renormalises after top-k: of {0,1,2} (0.526, 0.316, 0.158) p=0.8 keeps {0,1}
        Assert.Equal([0, 1], Draw(new SamplingParams { Seed = 7, TopK = 3, TopP = 0.8f }, Logits, 2000).Distinct().Order());
    }

    [Fact]
    public void LogprobsAreLogSoftmaxWithSortedAlternatives()
    {
        var l = Sampler.Logprobs(Logits, 2, 3);
        Assert.Equal(MathF.Log(0.15f), l.Logprob, 4);
        Assert.Equal([0, 1, 2], l.Top.Select(a => a.TokenId));
        Assert.Equal(MathF.Log(0.5f), l.Top[0].Logprob, 4);
        Assert.Empty(Sampler.Logprobs(Logits, 0, 0).Top);
    }

    [Fact]
    public void InvalidParametersAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { TopP = 0 }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { Temperature = -1 }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { MaxTokens = 0 }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { StopStrings = [""] }, 4));
    }

    [Fact]
    public void StopStringsCutTheTextAndHoldBackPartialMatches()
    {
        var m = new StopStringMatcher(["o w", "END"]);
        Assert.Equal("Hel", m.Push("Hel"));
        Assert.Equal("l", m.Push("lo"));      // "o" may start "o w"
        Assert.Equal("", m.Push(" wo"));      // "o w" completed: stop before it
        Assert.True(m.Stopped);
        Assert.Equal("", m.Flush());

        var n = new StopStringMatcher(["xyz"]);
        Assert.Equal("ab", n.Push("abx"));
        Assert.Equal("xq", n.Push("q"));
        Assert.Equal("", n.Push("xy"));
        Assert.Equal("xy", n.Flush());
        Assert.False(n.Stopped);
    }
}
