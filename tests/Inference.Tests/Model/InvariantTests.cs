using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Model;

public sealed class InvariantTests(ITestOutputHelper log)
{
    [Theory]
    [MemberData(nameof(Golden.Names), MemberType = typeof(Golden))]
    public void BatchedEqualsUnbatched(string name)
    {
        var g = Golden.Load(name);
        using var m = GoldenLogitsTests.Open(name);
        int vocab = m.Config.VocabSize, total = g.Prompts.Sum(p => p.Length);
        var s = m.CreateState(total, g.Prompts.Length, allPositionLogits: true);
        foreach (var p in g.Prompts) s.Add(m.CreateCache(), p);
        m.Forward(s, LogitsMode.AllPositions);
        int offset = 0;
        for (int i = 0; i < g.Prompts.Length; i++)
        {
            int n = g.Prompts[i].Length;
            var alone = GoldenLogitsTests.PrefillAll(m, g.Prompts[i]);
            Compare.Close(log, $"{name} prompt {i} batched vs alone", s.LogitsBuffer.AsSpan(offset * vocab, n * vocab), alone, 1e-5);
            offset += n;
        }
    }

    [Fact]
    public void MixedPrefillAndDecodeBatchMatchesSeparateRuns()
    {
        var g = Golden.Load("qwen2_bias");
        using var m = GoldenLogitsTests.Open("qwen2_bias");
        // sequence A has its prompt cached and decodes one token; B prefills in the same batch
        var a = m.CreateCache();
        var s = m.CreateState(32, 4);
        s.Add(a, g.Prompts[0]);
        m.Forward(s);
        s.Clear();
        s.Add(a, [g.DecodeTokens[0]]);
        s.Add(m.CreateCache(), g.Prompts[1]);
        m.Forward(s);
        int vocab = m.Config.VocabSize;
        Compare.Close(log, "decode row in a mixed batch", s.Logits(0), g.Decode.AsSpan(vocab, vocab), 1e-4);
        var bAlone = GoldenLogitsTests.PrefillAll(m, g.Prompts[1]);
        Compare.Close(log, "prefill row in a mixed batch", s.Logits(1), bAlone.AsSpan((g.Prompts[1].Length - 1) * vocab, vocab), 1e-5);
    }

    [Theory]
    [MemberData(nameof(Golden.Names), MemberType = typeof(Golden))]
    public void CachedDecodeEqualsFullRecompute(string name)
    {
        var g = Golden.Load(name);
        using var m = GoldenLogitsTests.Open(name);
        int vocab = m.Config.VocabSize;
        var seq = g.Prompts[2].ToList();
        var cache = m.CreateCache();
        var s = m.CreateState(64, 1);
        s.Add(cache, seq.ToArray());
        m.Forward(s);
        for (int step = 0; step < 6; step++)
        {
            int next = m.Kernels.Argmax(s.Logits(0));
            var full = GoldenLogitsTests.PrefillAll(m, seq.ToArray());
            Compare.Close(log, $"{name} step {step} cached vs recomputed", s.Logits(0), full.AsSpan((seq.Count - 1) * vocab, vocab), 1e-5);
            seq.Add(next);
            s.Clear();
            s.Add(cache, [next]);
            m.Forward(s);
        }
        Assert.Equal(seq.Count, cache.Length);
    }

    [Fact]
    public void Bf16PathMatchesF32PathOnTheSameRoundedWeights()
    {
        var g = Golden.Load("llama_gqa_tied");
        using var f32 = GoldenLogitsTests.Open("llama_gqa_tied");
        var bf16Weights = f32.Weights.ConvertTo(WeightType.BF16);
        using var bf16 = new Transformer(bf16Weights, maxContext: 64);
        using var widened = new Transformer(bf16Weights.ConvertTo(WeightType.F32), maxContext: 64);
        Assert.Equal(WeightType.BF16, bf16.Weights.Layers[0].Q.Weight.Type);
        Assert.Equal(WeightType.F32, widened.Weights.Layers[0].Q.Weight.Type);
        foreach (var p in g.Prompts)
        {
            var a = GoldenLogitsTests.PrefillAll(bf16, p);
            // widening bf16 to f32 is exact, so the two paths differ only in summation order
            Compare.Close(log, "bf16 kernels vs f32 kernels on identical values", a, GoldenLogitsTests.PrefillAll(widened, p), 1e-5);
            // against the unrounded f32 model: bf16 keeps 8 significant bits (relative rounding <= 2^-9 = 0.2% per
            // weight); over 2 layers these independent errors moved logits by 0.3-0.5% of their range (measured)
            Compare.Close(log, "bf16-rounded model vs f32 model", a, GoldenLogitsTests.PrefillAll(f32, p), 1e-2);
        }
    }
}
