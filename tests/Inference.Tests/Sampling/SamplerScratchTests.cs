using Loom.Inference.Sampling;

namespace Loom.Inference.Tests.Sampling;

/// <summary>The sampler's top-p by selection against a plain full sort of the vocabulary, and its allocations: a new
/// request's sampler allocates no vocabulary-sized arrays, and a steady-state step allocates nothing.</summary>
public sealed class SamplerScratchTests
{
    /// <summary>The plain twin: every candidate sorted, softmax over all, the sorted prefix reaching p, then a draw
    /// proportional within it from the same random stream.</summary>
    private static int NaiveTopP(float[] logits, float temperature, float topP, Rng rng)
    {
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ToArray();
        float max = logits[order[0]];
        var p = order.Select(i => Math.Exp((logits[i] - max) / temperature)).ToArray();
        double sum = p.Sum(), cum = 0;
        int keep = 0;
        while (keep < p.Length && cum < topP) cum += p[keep++] / sum;
        double total = p.Take(keep).Sum(), r = rng.NextDouble() * total, acc = 0;
        for (int i = 0; i < keep; i++)
            if (r < (acc += p[i])) return order[i];
        return order[keep - 1];
    }

    [Theory]
    [InlineData(0.8f, 0.9f, 1)]
    [InlineData(1.0f, 0.5f, 2)]
    [InlineData(0.3f, 0.95f, 3)]
    [InlineData(2.0f, 0.99f, 4)]
    public void TopPBySelectionDrawsWhatAFullSortDraws(float temperature, float topP, int seed)
    {
        var random = new Random(seed);
        var logits = new float[5000];
        var sampler = new Sampler(new SamplingParams { Temperature = temperature, TopP = topP, Seed = (ulong)seed }, logits.Length);
        var rng = new Rng((ulong)seed);
        for (int draw = 0; draw < 200; draw++)
        {
            // flat and peaked rows (distinct values: the order of equal logits is the sort's own choice)
            float scale = draw % 2 == 0 ? 1 : 12;
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(random.NextDouble() * scale);
            Assert.Equal(NaiveTopP(logits, temperature, topP, rng), sampler.Sample(logits));
        }
    }

    [Fact]
    public void ANewSamplerAllocatesNoVocabularyArraysAndAStepAllocatesNothing()
    {
        const int vocab = 49152;
        var logits = new float[vocab];
        var random = new Random(5);
        for (int i = 0; i < vocab; i++) logits[i] = (float)(random.NextDouble() * 10);
        SamplingParams[] cases =
        [
            new() { Temperature = 0 },
            new() { Temperature = 0.8f, TopP = 0.9f, Seed = 1 },
            new() { Temperature = 0.7f, TopK = 40, TopP = 0.95f, Seed = 2 },
            new() { Temperature = 1, MinP = 0.05f, Seed = 3 },
        ];
        new Sampler(cases[1], vocab).Sample(logits); // this thread's scratch, once
        foreach (var p in cases)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var sampler = new Sampler(p, vocab);
            long made = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(made < 4096, $"a new sampler allocated {made} bytes");
            sampler.Accept(sampler.Sample(logits)); // first use
            before = GC.GetAllocatedBytesForCurrentThread();
            for (int step = 0; step < 20; step++) sampler.Accept(sampler.Sample(logits));
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
    }
}
