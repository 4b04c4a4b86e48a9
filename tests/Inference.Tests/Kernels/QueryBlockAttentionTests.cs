using System.Runtime.Intrinsics.X86;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Kernels;

/// <summary>The 256-bit attention that computes several queries of one KV head together, block of positions by block of
/// positions (<see cref="Attention.Queries64x256"/>: a KV group's heads, for one token or a few consecutive tokens):
/// bitwise each query computed alone by <see cref="Attention.Head"/> at 256 bits, and close to the scalar twin; and the
/// batched attention that uses it (decode batches and prefill runs) equal to the per-head kernel.</summary>
public sealed unsafe class QueryBlockAttentionTests(ITestOutputHelper log)
{
    private const int Hd = 64;

    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static KvCache Filled(int kvHeads, int length, int seed, int blockSize, KvCacheFormat format = KvCacheFormat.F32)
    {
        var cache = new KvCache(1, kvHeads * Hd, Math.Max(length, 1), blockSize, format);
        cache.Reserve(length);
        var kv = Random(length * kvHeads * Hd * 2, seed, 2);
        for (int p = 0; p < length; p++)
            cache.Write(0, p, kv.AsSpan(2 * p * kvHeads * Hd, kvHeads * Hd), kv.AsSpan((2 * p + 1) * kvHeads * Hd, kvHeads * Hd));
        cache.Advance(length);
        return cache;
    }

    /// <param name="tokens">consecutive tokens of one sequence: the last attends to all <paramref name="length"/>
    /// positions, each earlier one to one position fewer (a prefill's causal rows).</param>
    [SkippableTheory]
    [InlineData(1, 3, 1, 16)]
    [InlineData(1, 3, 31, 16)]
    [InlineData(1, 3, 32, 16)]
    [InlineData(1, 3, 33, 3)]      // blocks of 3 positions: a pool page of the SmolLM2 shape in f32
    [InlineData(2, 3, 100, 3)]
    [InlineData(2, 4, 130, 6)]     // the Llama-3.2-1B group; blocks of 6 (a pool page in bf16)
    [InlineData(4, 3, 67, 16)]
    [InlineData(3, 1, 200, 16)]    // one head per KV head (no grouping): the tokens alone share the rows
    [InlineData(2, 3, 100, 6, true)]
    [InlineData(1, 4, 37, 16, true)]
    public void QueriesEqualEachQueryAloneBitwise(int tokens, int heads, int length, int blockSize, bool bf16 = false)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "no AVX2 on this machine: the 256-bit kernels are not tested here");
        const int kvHeads = 2, row = 208;
        var cache = Filled(kvHeads, length, 5 + length, blockSize, bf16 ? KvCacheFormat.Bf16 : KvCacheFormat.F32);
        int m = tokens * heads;
        var q = Random(m * Hd, 6, 2);
        float** qs = stackalloc float*[m];
        float** os = stackalloc float*[m];
        for (int kv = 0; kv < kvHeads; kv++)
        {
            var together = Random(m * Hd, 9);       // stale contents must not matter
            var scores = Random(m * row, 7);
            var lengths = Enumerable.Range(0, m).Select(i => length - (tokens - 1 - i / heads)).ToArray();
            fixed (float* qp = q)
            fixed (float* op = together)
            fixed (float* sp = scores)
            fixed (int* lp = lengths)
            {
                for (int i = 0; i < m; i++) { qs[i] = qp + i * Hd; os[i] = op + i * Hd; }
                Attention.Queries64x256(qs, os, lp, m, cache, 0, kv, sp, row);
            }
            var alone = new float[m * Hd];
            var naive = new float[m * Hd];
            for (int i = 0; i < m; i++)
            {
                Attention.Head(alone.AsSpan(i * Hd, Hd), q.AsSpan(i * Hd, Hd), cache, 0, kv, lengths[i], new float[row], SimdLevel.Vector256);
                Attention.NaiveHead(naive.AsSpan(i * Hd, Hd), q.AsSpan(i * Hd, Hd), cache, 0, kv, lengths[i]);
            }
            int differ = Compare.BitsDiffer(alone, together);
            log.WriteLine($"{tokens} tokens x {heads} heads, length {length}, blocks of {blockSize}, kv head {kv}: {differ} of {alone.Length} outputs differ bitwise from one query at a time");
            Assert.Equal(0, differ);
            Compare.Close(log, "queries together vs scalar twin", together, naive, 1e-5);
        }
    }

    /// <summary>The batched attention at 256 bits over a decode batch (one token of each of 12 sequences), over a
    /// batch holding a prefill run (a sequence's 40 new tokens) beside two decode tokens, and over one decode token at a
    /// context long enough for its groups to go together: every output bitwise the per-head kernel's, so neither the
    /// batch's composition nor the path it picks changes a bit.</summary>
    [SkippableTheory]
    [InlineData("decode")]
    [InlineData("prefill")]
    [InlineData("one long")]
    public void BatchedAttentionEqualsPerHead(string batch)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "no AVX2 on this machine: the 256-bit kernels are not tested here");
        const int heads = 9, kvHeads = 3, row = 320;
        using var k = new CpuKernels(SimdLevel.Vector256, 2);
        IKvCache[] caches;
        int[] lengths;
        if (batch == "one long")
        {
            caches = [Filled(kvHeads, CpuKernels.GroupedDecodeMinContext + 44, 33, 3)];
            lengths = [caches[0].Length];
        }
        else if (batch == "prefill")
        {
            var run = Filled(kvHeads, 45, 30, 3);
            var a = Filled(kvHeads, 7, 31, 3);
            var b = Filled(kvHeads, 90, 32, 16);
            caches = [a, .. Enumerable.Repeat<IKvCache>(run, 40), b];
            lengths = [7, .. Enumerable.Range(6, 40), 90];
        }
        else
        {
            caches = Enumerable.Range(0, 12).Select(t => (IKvCache)Filled(kvHeads, 5 + 17 * t, 10 + t, t % 2 == 0 ? 3 : 16)).ToArray();
            lengths = caches.Select(c => c.Length).ToArray();
        }
        int tokens = caches.Length;
        var q = Random(tokens * heads * Hd, 8, 2);
        var output = new float[tokens * heads * Hd];
        var scratch = new float[k.AttentionScratchRows * (heads / kvHeads) * row];
        Assert.True(tokens * kvHeads >= k.AttentionScratchRows || lengths.Min() >= CpuKernels.GroupedDecodeMinContext, "the batch takes the per-head path");
        k.Attention(new AttentionBatch(output, q, caches, lengths, tokens, heads, kvHeads, Hd, 0, scratch, row));
        var expected = new float[Hd];
        int differ = 0;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                var got = output.AsSpan((t * heads + h) * Hd, Hd);
                var qh = q.AsSpan((t * heads + h) * Hd, Hd);
                Attention.Head(expected, qh, caches[t], 0, h / (heads / kvHeads), lengths[t], new float[row], SimdLevel.Vector256);
                differ += Compare.BitsDiffer(expected, got);
                Attention.NaiveHead(expected, qh, caches[t], 0, h / (heads / kvHeads), lengths[t]);
                Compare.Close(null, $"token {t} head {h}", got, expected, 1e-5);
            }
        log.WriteLine($"{differ} of {output.Length} outputs differ bitwise from the per-head kernel");
        Assert.Equal(0, differ);
    }
}
