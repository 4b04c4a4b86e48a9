using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>Grouped-query attention with a KV group's query heads computed together (each key and value row read once
/// per group): bitwise each head computed alone, and close to the scalar twin; and the batched decode attention that
/// uses it equal to the per-head path.</summary>
public sealed class GroupAttentionTests(ITestOutputHelper log)
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static KvCache Filled(int kvHeads, int length, int seed, int blockSize = 16)
    {
        const int hd = 64;
        var cache = new KvCache(1, kvHeads * hd, 256, blockSize: blockSize);
        cache.Reserve(length);
        var kv = Random(length * kvHeads * hd * 2, seed, 2);
        for (int p = 0; p < length; p++)
        {
            kv.AsSpan(p * kvHeads * hd, kvHeads * hd).CopyTo(cache.Keys(0, p / blockSize).Slice(p % blockSize * kvHeads * hd));
            kv.AsSpan((length + p) * kvHeads * hd, kvHeads * hd).CopyTo(cache.Values(0, p / blockSize).Slice(p % blockSize * kvHeads * hd));
        }
        cache.Advance(length);
        return cache;
    }

    [SkippableTheory]
    [InlineData(1, 37)]
    [InlineData(2, 16)]
    [InlineData(3, 1)]
    [InlineData(3, 100)]
    [InlineData(4, 37)]
    [InlineData(7, 50)]    // a group of 4 and one of 3
    [InlineData(9, 200)]   // two groups of 4 and a single head
    [InlineData(3, 100, 3)]   // blocks of 3 positions (a pool page of the SmolLM2 shape in f32) and of 6 (in bf16)
    [InlineData(9, 200, 3)]
    [InlineData(4, 37, 6)]
    public void GroupEqualsEachHeadAloneBitwise(int heads, int length, int blockSize = 16)
    {
        Skip.If(Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        const int hd = 64, kvHeads = 2, row = 208;
        var cache = Filled(kvHeads, length, 5, blockSize);
        var q = Random(heads * hd, 6, 2);
        for (int kv = 0; kv < kvHeads; kv++)
        {
            var grouped = new float[heads * hd];
            var scores = Random(heads * row, 7);   // stale contents must not matter
            Attention.Group64(grouped, q, heads, cache, 0, kv, length, scores, row);
            var alone = new float[heads * hd];
            var naive = new float[heads * hd];
            for (int h = 0; h < heads; h++)
            {
                Attention.Head(alone.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), cache, 0, kv, length, new float[row], SimdLevel.Vector512);
                Attention.NaiveHead(naive.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), cache, 0, kv, length);
            }
            int differ = Compare.BitsDiffer(alone, grouped);
            log.WriteLine($"{heads} heads, length {length}, kv head {kv}: {differ} of {alone.Length} outputs differ bitwise from one head at a time");
            Assert.Equal(0, differ);
            Compare.Close(log, "grouped vs scalar twin", grouped, naive, 1e-5);
        }
    }

    /// <summary>A prefill's grouped attention against transposed keys (one token's query heads of a KV head together)
    /// equals the per-head transposed kernel bit for bit, over private blocks and pool-page-sized ones.</summary>
    [SkippableTheory]
    [InlineData(1, 37)]
    [InlineData(3, 1)]
    [InlineData(3, 16)]
    [InlineData(3, 100)]
    [InlineData(4, 37)]
    [InlineData(7, 50)]    // a group of 4 and one of 3
    [InlineData(9, 200)]   // two groups of 4 and a single head
    [InlineData(6, 45)]    // a group of 4 and one of 2
    [InlineData(3, 100, 3)]
    [InlineData(4, 37, 6)]
    public unsafe void GroupTransposedEqualsEachHeadAloneBitwise(int heads, int length, int blockSize = 16)
    {
        Skip.If(Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        const int hd = 64, kvHeads = 2, row = 208;
        var cache = Filled(kvHeads, length, 15, blockSize);
        int blocks = (length + 15) / 16;
        var keysT = new float[kvHeads * blocks * hd * 16];
        Attention.TransposeKeys(keysT, cache, 0, length, kvHeads, hd);
        var q = Random(heads * hd, 16, 2);
        for (int kv = 0; kv < kvHeads; kv++)
        {
            var grouped = new float[heads * hd];
            var scores = Random(heads * row, 17);   // stale contents must not matter
            fixed (float* op = grouped)
            fixed (float* qp = q)
            fixed (float* sp = scores)
                Attention.GroupTransposed(op, qp, heads, keysT, blocks, cache, 0, kv, length, sp, row);
            var alone = new float[heads * hd];
            var naive = new float[heads * hd];
            for (int h = 0; h < heads; h++)
            {
                Attention.HeadTransposed(alone.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), keysT, blocks, cache, 0, kv, length, Random(row, 18 + h));
                Attention.NaiveHead(naive.AsSpan(h * hd, hd), q.AsSpan(h * hd, hd), cache, 0, kv, length);
            }
            int differ = Compare.BitsDiffer(alone, grouped);
            log.WriteLine($"{heads} heads, length {length}, blocks of {blockSize}, kv head {kv}: {differ} of {alone.Length} outputs differ bitwise from one head at a time");
            Assert.Equal(0, differ);
            Compare.Close(log, "grouped transposed vs scalar twin", grouped, naive, 1e-5);
        }
    }

    /// <summary>A decode batch large enough for grouped items: the attention output equals the scalar twin's per head,
    /// and equals the per-head kernel's bit for bit (so the batch size, which picks the path, changes no bit).</summary>
    [SkippableFact]
    public void BatchedDecodeAttentionEqualsPerHead()
    {
        Skip.If(Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        const int hd = 64, heads = 9, kvHeads = 3, tokens = 12, row = 256;
        using var k = new CpuKernels(SimdLevel.Vector512, 2);
        var caches = Enumerable.Range(0, tokens).Select(t => (IKvCache)Filled(kvHeads, 5 + 17 * t, 10 + t)).ToArray();
        var lengths = caches.Select(c => c.Length).ToArray();
        var q = Random(tokens * heads * hd, 8, 2);
        var output = new float[tokens * heads * hd];
        var scratch = new float[k.AttentionScratchRows * (heads / kvHeads) * row];
        Assert.True(tokens * kvHeads >= k.AttentionScratchRows, "the batch is too small for grouped items");
        k.Attention(new AttentionBatch(output, q, caches, lengths, tokens, heads, kvHeads, hd, 0, scratch, row));
        var expected = new float[hd];
        int differ = 0;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                var got = output.AsSpan((t * heads + h) * hd, hd);
                var qh = q.AsSpan((t * heads + h) * hd, hd);
                Attention.Head(expected, qh, caches[t], 0, h / (heads / kvHeads), lengths[t], new float[row], SimdLevel.Vector512);
                differ += Compare.BitsDiffer(got, expected);
                Attention.NaiveHead(expected, qh, caches[t], 0, h / (heads / kvHeads), lengths[t]);
                Compare.Close(null, $"token {t} head {h}", got, expected, 1e-5);
            }
        log.WriteLine($"{differ} of {output.Length} outputs differ bitwise from the per-head kernel");
        Assert.Equal(0, differ);
    }

    /// <summary>A batch holding a prefill run (one sequence's 40 new tokens, its 3 KV heads' value rows made once for the
    /// run) beside two decode tokens: each run token's output is bitwise <see cref="Attention.HeadTransposed"/>'s for that
    /// head alone, and every output is close to the scalar twin's.</summary>
    [SkippableTheory]
    [InlineData(16)]
    [InlineData(3)]   // pool pages of 3 positions: a run's rows span many blocks
    public unsafe void PrefillRunEqualsEachHeadAlone(int blockSize)
    {
        Skip.If(Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        const int hd = 64, heads = 9, kvHeads = 3, row = 320, runTokens = 40;
        using var k = new CpuKernels(SimdLevel.Vector512, 2);
        var run = Filled(kvHeads, 45, 30, blockSize);
        IKvCache[] caches = [Filled(kvHeads, 7, 31, blockSize), .. Enumerable.Repeat<IKvCache>(run, runTokens), Filled(kvHeads, 90, 32, blockSize)];
        int[] lengths = [7, .. Enumerable.Range(6, runTokens), 90];
        int tokens = caches.Length;
        var q = Random(tokens * heads * hd, 8, 2);
        var output = new float[tokens * heads * hd];
        var scratch = new float[k.AttentionScratchRows * (heads / kvHeads) * row];
        int blocks = (row + 15) / 16;
        var keysT = new float[blocks * 16 * kvHeads * hd];
        Assert.True(runTokens >= CpuKernels.TransposedAttentionMinTokens);
        k.Attention(new AttentionBatch(output, q, caches, lengths, tokens, heads, kvHeads, hd, 0, scratch, row, keysT));
        var runKeysT = new float[kvHeads * 3 * hd * 16];   // the run's keys (45 positions: 3 blocks of 16), transposed
        Attention.TransposeKeys(runKeysT, run, 0, 45, kvHeads, hd);
        var expected = new float[hd];
        int differ = 0;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                var got = output.AsSpan((t * heads + h) * hd, hd);
                var qh = q.AsSpan((t * heads + h) * hd, hd);
                if (t >= 1 && t <= runTokens)
                {
                    Attention.HeadTransposed(expected, qh, runKeysT, 3, run, 0, h / (heads / kvHeads), lengths[t], new float[row]);
                    differ += Compare.BitsDiffer(got, expected);
                }
                Attention.NaiveHead(expected, qh, caches[t], 0, h / (heads / kvHeads), lengths[t]);
                Compare.Close(null, $"token {t} head {h}", got, expected, 1e-5);
            }
        log.WriteLine($"{differ} of {runTokens * heads * hd} run outputs differ bitwise from one head at a time");
        Assert.Equal(0, differ);
    }
}
