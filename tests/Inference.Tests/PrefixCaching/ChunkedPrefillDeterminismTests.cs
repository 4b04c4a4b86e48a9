using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.PrefixCaching;

/// <summary>Prefix caching serves a request's first positions from KV computed by another request, in other chunks:
/// that is only exact if a position's keys, values and logits do not depend on how the prompt was cut into chunks.</summary>
public sealed class ChunkedPrefillDeterminismTests(ITestOutputHelper log)
{
    public static TheoryData<string, SimdLevel, int> Cases(SimdLevel[] levels)
    {
        var d = new TheoryData<string, SimdLevel, int>();
        foreach (var name in Golden.Names)
            foreach (var level in levels)
                foreach (int split in new[] { 1, 3, 8, 12 })
                    d.Add(name, level, split);
        return d;
    }

    public static TheoryData<string, SimdLevel, int> Exact() => Cases([SimdLevel.Scalar, SimdLevel.Vector256]);
    public static TheoryData<string, SimdLevel, int> Wide() => Cases([SimdLevel.Vector512]);

    /// <summary>The levels that prefix caching's bitwise guarantee rests on.</summary>
    [Theory]
    [MemberData(nameof(Exact))]
    public void SplitPrefillEqualsWholePrefillBitwise(string name, SimdLevel level, int split)
    {
        var (whole, parts) = Both(name, level, split);
        int differ = 0;
        for (int i = 0; i < whole.Length; i++) if (BitConverter.SingleToInt32Bits(whole[i]) != BitConverter.SingleToInt32Bits(parts[i])) differ++;
        log.WriteLine($"{name} {level} split {split}: {differ} of {whole.Length} logits differ bitwise");
        Assert.Equal(0, differ);
    }

    /// <summary>The Vector512 kernels are not bitwise invariant to the cut: the packed matmul computes groups of eight
    /// input rows with another kernel than the rows left over, and a run of eight or more prefill tokens takes the
    /// transposed-keys attention; so a position's values depend on where it falls in its chunk (as they already depend on
    /// the batch around it). Cached blocks are then as close as a batch-mate's rows are, not bitwise equal.</summary>
    [Theory]
    [MemberData(nameof(Wide))]
    public void SplitPrefillIsCloseToWholePrefillWithTheVector512Kernels(string name, SimdLevel level, int split)
    {
        var (whole, parts) = Both(name, level, split);
        Compare.Close(log, $"{name} {level} split {split}", parts, whole, 1e-5);
    }

    private (float[] Whole, float[] Parts) Both(string name, SimdLevel level, int split)
    {
        using var m = GoldenLogitsTests.Open(name, level: level);
        var prompt = Golden.Load(name).Prompts.OrderByDescending(p => p.Length).First();
        // a longer prompt than the golden ones: the longest repeated within the context
        var tokens = Enumerable.Range(0, Math.Min(40, m.MaxContext - 1)).Select(i => prompt[i % prompt.Length]).ToArray();
        Assert.True(split < tokens.Length);

        var whole = m.CreateState(64, 1);
        whole.Add(m.CreateCache(), tokens);
        m.Forward(whole);

        var cache = m.CreateCache();
        var parts = m.CreateState(64, 1);
        parts.Add(cache, tokens[..split]);
        m.Forward(parts);
        parts.Clear();
        parts.Add(cache, tokens[split..]);
        m.Forward(parts);
        return (whole.Logits(0).ToArray(), parts.Logits(0).ToArray());
    }
}
