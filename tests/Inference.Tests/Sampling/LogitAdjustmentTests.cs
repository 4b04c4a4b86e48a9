using Loom.Inference.Sampling;

namespace Loom.Inference.Tests.Sampling;

/// <summary>Logit bias and the presence, frequency and repetition penalties, checked by their effect on greedy choices
/// whose margins the arithmetic decides.</summary>
public sealed class LogitAdjustmentTests
{
    private static readonly float[] Logits = [1.0f, 0.9f, 0.5f, -0.5f];

    private static int Next(Sampler s)
    {
        int t = s.Sample(Logits);
        s.Accept(t);
        return t;
    }

    [Fact]
    public void LogitBiasMovesTheChoice()
    {
        Assert.Equal(2, Next(new Sampler(new SamplingParams { Temperature = 0, LogitBias = new Dictionary<int, float> { [2] = 0.6f } }, 4)));
        Assert.Equal(0, Next(new Sampler(new SamplingParams { Temperature = 0, LogitBias = new Dictionary<int, float> { [2] = 0.4f } }, 4)));
        // -100 bans a token even under sampling.
        var banned = new Sampler(new SamplingParams { Seed = 3, LogitBias = new Dictionary<int, float> { [0] = -100 } }, 4);
        Assert.DoesNotContain(0, Enumerable.Range(0, 2000).Select(_ => banned.Sample(Logits)));
    }

    [Fact]
    public void FrequencyPenaltyGrowsWithEachRepeatPresencePenaltyDoesNot()
    {
        // frequency 0.06: token 0 falls to 1 - 0.06n; it loses to token 1 (0.9) once n = 2 (0.88).
        var f = new Sampler(new SamplingParams { Temperature = 0, FrequencyPenalty = 0.06f }, 4);
        Assert.Equal([0, 0, 1], new[] { Next(f), Next(f), Next(f) });
        // presence 0.06: token 0 at 0.94 after any number of repeats, still above 0.9.
        var p = new Sampler(new SamplingParams { Temperature = 0, PresencePenalty = 0.06f }, 4);
        Assert.Equal([0, 0, 0], new[] { Next(p), Next(p), Next(p) });
        // presence 0.2: token 0 (0.8) loses at once to token 1, which then (0.7) loses to 0 again.
        var q = new Sampler(new SamplingParams { Temperature = 0, PresencePenalty = 0.2f }, 4);
        Assert.Equal([0, 1, 0], new[] { Next(q), Next(q), Next(q) });
    }

    [Fact]
    public void RepetitionPenaltyCountsThePromptAndDividesPositiveLogits()
    {
        // 1.0 / 1.2 = 0.83 < 0.9: a prompt that holds token 0 turns the first choice to token 1.
        Assert.Equal(1, Next(new Sampler(new SamplingParams { Temperature = 0, RepetitionPenalty = 1.2f }, 4, prompt: [0, 3])));
        Assert.Equal(0, Next(new Sampler(new SamplingParams { Temperature = 0, RepetitionPenalty = 1.2f }, 4, prompt: [3])));
    }

    [Fact]
    public void OutOfRangeSettingsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { PresencePenalty = 3 }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { RepetitionPenalty = 0 }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { LogitBias = new Dictionary<int, float> { [1] = 101 } }, 4));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingParams { LogitBias = new Dictionary<int, float> { [4] = 1 } }, 4));
    }
}
