using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Model;

/// <summary>Loom's logits against the float64 PyTorch oracle (tests/reference/make_golden.py).
/// f32 weights: max relative error 1e-4. bf16 weights are widened to f32 exactly (a shift), and the oracle
/// computes from the same bf16 values, so the bf16 path is held to the same 1e-4.</summary>
public sealed class GoldenLogitsTests(ITestOutputHelper log)
{
    private const double Tolerance = 1e-4;

    internal static Transformer Open(string name, WeightFormat format = WeightFormat.Auto, SimdLevel? level = null)
    {
        string dir = Golden.PathOf(name);
        var config = ModelConfig.Load(dir);
        return new Transformer(ModelWeights.Load(dir, config, format), new CpuKernels(level ?? Simd.Best), maxContext: 64);
    }

    internal static float[] PrefillAll(Transformer m, int[] prompt)
    {
        var s = m.CreateState(prompt.Length, 1, allPositionLogits: true);
        s.Add(m.CreateCache(), prompt);
        m.Forward(s, LogitsMode.AllPositions);
        return s.LogitsBuffer.AsSpan(0, prompt.Length * m.Config.VocabSize).ToArray();
    }

    public static TheoryData<string, WeightFormat, SimdLevel> Cases()
    {
        var d = new TheoryData<string, WeightFormat, SimdLevel>();
        foreach (var n in Golden.Names) d.Add(n, WeightFormat.Auto, Simd.Best);
        d.Add("llama3_scaled_bf16", WeightFormat.F32, Simd.Best);   // bf16 checkpoint run on the f32 path
        // the 256-bit kernels also on a machine with AVX-512 (without it, the Simd.Best cases above are these)
        bool best256 = Simd.Best == SimdLevel.Vector256;
        if (!best256) d.Add("llama_gqa_tied", WeightFormat.Auto, SimdLevel.Vector256);
        if (!best256) d.Add("llama3_scaled_bf16", WeightFormat.Auto, SimdLevel.Vector256);
        d.Add("qwen2_bias", WeightFormat.Auto, SimdLevel.Scalar);
        d.Add("mistral_hd64", WeightFormat.BF16, Simd.Best);          // f32 checkpoint rounded to bf16: see below
        if (!best256) d.Add("mistral_hd64", WeightFormat.Auto, SimdLevel.Vector256);
        return d;
    }

    /// <summary>An f32 checkpoint loaded as bf16 is rounded (8 significant bits), so it is held to a looser bound:
    /// each weight moves by at most 2^-9 = 0.2% relative; over two layers these independent errors moved logits by
    /// 0.3–0.5% of their range in the cases measured, so 1% leaves margin while still catching a wrong widening
    /// (see InvariantTests for the exact-widening check at 1e-5).</summary>
    private static double ToleranceFor(string name, WeightFormat format) =>
        format == WeightFormat.BF16 && name != "llama3_scaled_bf16" ? 1e-2 : Tolerance;

    [Theory]
    [MemberData(nameof(Cases))]
    public void PrefillMatchesOracle(string name, WeightFormat format, SimdLevel level)
    {
        var g = Golden.Load(name);
        using var m = Open(name, format, level);
        for (int i = 0; i < g.Prompts.Length; i++)
            Compare.Close(log, $"{name} {format} {level} prefill {i}", PrefillAll(m, g.Prompts[i]), g.Prefill[i], ToleranceFor(name, format));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CachedDecodeMatchesOracle(string name, WeightFormat format, SimdLevel level)
    {
        var g = Golden.Load(name);
        using var m = Open(name, format, level);
        int vocab = m.Config.VocabSize;
        var s = m.CreateState(64, 1);
        var cache = m.CreateCache();
        s.Add(cache, g.Prompts[g.DecodePrompt]);
        m.Forward(s);
        for (int step = 0; step < g.DecodeTokens.Length; step++)
        {
            var expected = g.Decode.AsSpan(step * vocab, vocab);
            Compare.Close(log, $"{name} {format} {level} decode step {step}", s.Logits(0), expected, ToleranceFor(name, format));
            if (ToleranceFor(name, format) == Tolerance) Assert.Equal(g.DecodeTokens[step], m.Kernels.Argmax(s.Logits(0)));
            s.Clear();
            s.Add(cache, [g.DecodeTokens[step]]);
            m.Forward(s);
        }
    }
}
