using Loom.Inference.Formats;

namespace Loom.Inference.Tests.Formats;

/// <summary>The vectorised conversions against the one-value-at-a-time definitions, on every length up to a few
/// vectors (so every tail), with NaN, infinities, zeros of both signs and subnormals among the values.</summary>
public sealed class DTypeConvertTests
{
    private static readonly ushort[] Special = [0x7FC0, 0xFFC0, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x807F, 0x3F80, 0xC2F7];

    [Fact]
    public void BFloat16ToFloatIsExactForEveryPatternAndLength()
    {
        var rng = new Random(5);
        for (int n = 0; n <= 70; n++)
        {
            var src = new ushort[n];
            for (int i = 0; i < n; i++) src[i] = i % 7 == 3 ? Special[rng.Next(Special.Length)] : (ushort)rng.Next(65536);
            var dst = new float[n + 1];
            dst[n] = 42;
            DTypeConvert.BFloat16ToFloat(src, dst);
            for (int i = 0; i < n; i++) Assert.Equal((uint)src[i] << 16, BitConverter.SingleToUInt32Bits(dst[i]));
            Assert.Equal(42, dst[n]); // nothing written past the source's length
        }
        // every one of the 65,536 patterns
        var all = Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();
        var f = new float[all.Length];
        DTypeConvert.BFloat16ToFloat(all, f);
        for (int i = 0; i < all.Length; i++) Assert.Equal((uint)i << 16, BitConverter.SingleToUInt32Bits(f[i]));
        Assert.Throws<ArgumentException>(() => DTypeConvert.BFloat16ToFloat(new ushort[4], new float[3]));
    }

    [Fact]
    public void AllFiniteFindsANaNOrInfinityAtAnyPosition()
    {
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(0x7F800001) })
            for (int n = 1; n <= 40; n++)
                for (int at = 0; at < n; at++)
                {
                    var v = Enumerable.Range(0, n).Select(i => (i - 20) * 1e37f * 0.01f).ToArray();
                    Assert.True(DTypeConvert.AllFinite(v));
                    v[at] = bad;
                    Assert.False(DTypeConvert.AllFinite(v), $"n={n} at={at} value={bad}");
                }
        Assert.True(DTypeConvert.AllFinite([float.MaxValue, -float.MaxValue, float.Epsilon, -0f]));
        Assert.True(DTypeConvert.AllFinite([]));
    }
}
