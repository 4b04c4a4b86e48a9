using System.Runtime.Intrinsics;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>Attention over a bf16 KV cache (Inference:KvCacheFormat = bf16) gives bitwise what the same kernel gives over
/// an f32 cache holding the bf16-rounded keys and values: the kernels widen each element as they load it (exact), and do
/// the same operations in the same order. Checked through the batched attention call at every SIMD level, which routes
/// decode tokens (grouped or per head), prefill runs (transposed keys at Vector512) and the scalar twin, over paged and
/// private caches, lengths with full and partial last blocks, and GQA groups of 5 heads (a group of 4 and a single
/// one). Vector512 runs on .NET's software Vector512 where the CPU lacks AVX-512: the kernels' logic, not AVX-512 code.</summary>
public sealed class Bf16KvAttentionTests(ITestOutputHelper log)
{
    private const int KvHeads = 2, Heads = 10, RowLength = 144;
    private static readonly int[] Lengths = [1, 15, 16, 17, 100, 130];

    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static float[] RoundedToBf16(float[] v) =>
        v.Select(x => BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(x) << 16)).ToArray();

    /// <summary>Caches of <see cref="Lengths"/> positions holding <paramref name="kv"/> ((length, 2, kvDim) per cache).</summary>
    private static IKvCache[] Caches(Func<int, int, IKvCache> make, float[][] kv, int kvDim)
    {
        var caches = new IKvCache[Lengths.Length];
        for (int i = 0; i < Lengths.Length; i++)
        {
            int length = Lengths[i];
            var c = caches[i] = make(i, length);
            c.Reserve(length);
            for (int p = 0; p < length; p++)
                c.Write(0, p, kv[i].AsSpan(2 * p * kvDim, kvDim), kv[i].AsSpan((2 * p + 1) * kvDim, kvDim));
            c.Advance(length);
        }
        return caches;
    }

    /// <summary>Four batches through <see cref="CpuKernels.Attention"/>: every sequence's next token (decode, enough of them
    /// for grouped items), one token alone, and two prefill runs (the last 20 positions of the longest sequence, the first 17 of another). Output:
    /// all of their outputs, one after another.</summary>
    private static float[] Attend(CpuKernels k, IKvCache[] caches, int hd)
    {
        var output = new List<float>();
        void Run(IKvCache[] tokenCaches, int[] lengths, int seed)
        {
            int tokens = lengths.Length, kvDim = KvHeads * hd;
            var q = Random(tokens * Heads * hd, seed, 2);
            var o = new float[tokens * Heads * hd];
            var scratch = new float[k.AttentionScratchRows * (Heads / KvHeads) * RowLength];
            var keysT = new float[RowLength * kvDim];
            k.Attention(new AttentionBatch(o, q, tokenCaches, lengths, tokens, Heads, KvHeads, hd, 0, scratch, RowLength, keysT));
            output.AddRange(o);
        }
        // enough decode tokens for grouped items (all heads of a KV group together; Group64 at Vector512)
        int decode = Math.Max(caches.Length, (k.AttentionScratchRows + KvHeads - 1) / KvHeads);
        Run(Enumerable.Range(0, decode).Select(i => caches[i % caches.Length]).ToArray(), Enumerable.Range(0, decode).Select(i => Lengths[i % caches.Length]).ToArray(), 1);
        Run([caches[4]], [Lengths[4]], 2);
        Run(Enumerable.Repeat(caches[5], 20).ToArray(), Enumerable.Range(Lengths[5] - 19, 20).ToArray(), 3);
        Run(Enumerable.Repeat(caches[3], 17).ToArray(), Enumerable.Range(1, 17).ToArray(), 4);
        return [.. output];
    }

    public static TheoryData<SimdLevel, int, bool> Cases()
    {
        var d = new TheoryData<SimdLevel, int, bool>();
        foreach (var level in new[] { SimdLevel.Scalar, SimdLevel.Vector256, SimdLevel.Vector512 })
            foreach (int hd in new[] { 20, 32, 64 })   // 20: the scalar tails of the vector loops
                foreach (bool paged in new[] { true, false })
                    d.Add(level, hd, paged);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AttentionOverBf16IsBitwiseTheKernelOverRoundedF32(SimdLevel level, int hd, bool paged)
    {
        int kvDim = KvHeads * hd;
        var kv = Lengths.Select((n, i) => Random(n * 2 * kvDim, 100 + i, 2)).ToArray();
        var rounded = kv.Select(RoundedToBf16).ToArray();
        // pages of 256 floats: 2 or 4 positions per f32 page, 4 or 8 per bf16 page; private caches: blocks of 16
        using var pool = new PagePool(4L << 20, 256);
        Func<int, int, IKvCache> Make(KvCacheFormat format, int ids) => paged
            ? (i, n) => new PagedKvCache(pool, ids + i, 1, kvDim, n, format)
            : (_, n) => new KvCache(1, kvDim, n, 16, format);
        var bf16Caches = Caches(Make(KvCacheFormat.Bf16, 0), kv, kvDim);    // written unrounded: the cache rounds
        var f32Caches = Caches(Make(KvCacheFormat.F32, 100), rounded, kvDim);
        Assert.Equal(paged ? 2 * f32Caches[0].BlockSize : 16, bf16Caches[0].BlockSize);

        using var k = new CpuKernels(level, 2);
        var expected = Attend(k, f32Caches, hd);
        var actual = Attend(k, bf16Caches, hd);
        int differ = 0;
        for (int i = 0; i < expected.Length; i++) if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])) differ++;
        string where = level == SimdLevel.Vector512 && !Vector512.IsHardwareAccelerated ? " (software Vector512: no AVX-512 here)" : "";
        log.WriteLine($"{level}{where}, head dim {hd}, {(paged ? "paged" : "private")}: {differ} of {expected.Length} outputs differ bitwise");
        Assert.Equal(0, differ);

        // the outputs are attention: close to the scalar twin over the same values, and the rounding shows against the
        // unrounded keys and values
        var q = Random(hd, 5, 2);
        var a = new float[hd];
        var b = new float[hd];
        var unrounded = new float[hd];
        Attention.Head(a, q, bf16Caches[5], 0, 1, Lengths[5], new float[RowLength], level);
        Attention.NaiveHead(b, q, f32Caches[5], 0, 1, Lengths[5]);
        Compare.Close(log, "bf16 cache vs scalar twin over the rounded values", a, b, 1e-5);
        var unroundedCaches = Caches(Make(KvCacheFormat.F32, 200), kv, kvDim);
        Attention.NaiveHead(unrounded, q, unroundedCaches[5], 0, 1, Lengths[5]);
        Assert.NotEqual(unrounded, a);
        foreach (var c in bf16Caches.Concat(f32Caches).Concat(unroundedCaches)) (c as PagedKvCache)?.Release();
        Assert.Null(pool.Audit());
    }

    /// <summary>A bf16 cache cannot be read as float32 (a reader that did not learn the format fails instead of reading
    /// pairs of bf16 as floats), nor an f32 one as bf16.</summary>
    [Fact]
    public void ACacheIsReadOnlyInItsOwnFormat()
    {
        using var pool = new PagePool(64L * 256 * 4, 256);
        using var bf16 = new PagedKvCache(pool, 1, 2, 64, 32, KvCacheFormat.Bf16);
        bf16.Reserve(8);
        Assert.Equal(8, bf16.BlockSize);
        Assert.Equal(8 * 64, bf16.Keys16(1, 0).Length);
        Assert.Throws<InvalidOperationException>(() => bf16.Keys(0, 0).Length);
        Assert.Throws<InvalidOperationException>(() => bf16.Values(0, 0).Length);
        var f32 = new KvCache(2, 64, 32);
        f32.Reserve(1);
        Assert.Throws<InvalidOperationException>(() => f32.Keys16(0, 0).Length);
        var managed = new KvCache(2, 64, 32, 16, KvCacheFormat.Bf16);
        managed.Reserve(1);
        Assert.Throws<InvalidOperationException>(() => managed.Values(0, 0).Length);

        // rows are rounded to nearest even on the way in and widened exactly on the way out
        var key = Enumerable.Range(0, 64).Select(i => 1f + i * (1f / 512) + 1f / 1024).ToArray();
        var value = Enumerable.Range(0, 64).Select(i => -3.14159f * i).ToArray();
        bf16.Write(1, 5, key, value);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(key[i]) << 16), bf16.KeyAt(1, 5, i));
            Assert.Equal(BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(value[i]) << 16), bf16.ValueAt(1, 5, i));
        }
    }
}
