using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Kernels;

/// <summary>The forward pass's row-wise passes: RoPE at every vector width bitwise the scalar rotation, and RMSNorm and
/// the RoPE-and-KV-write pass, which a prefill's rows share out over the pool, bitwise the same rows computed one by
/// one on the calling thread (the per-token loop the transformer ran before).</summary>
public sealed class RowPassTests
{
    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 4 - 2);
        return v;
    }

    private static ModelConfig Config(int headDim) => new()
    {
        ModelType = "llama", HiddenSize = 3 * headDim, IntermediateSize = 64, NumLayers = 2, NumHeads = 3, NumKvHeads = 1,
        HeadDim = headDim, VocabSize = 32, RopeTheta = 10000, MaxPositionEmbeddings = 512,
    };

    [Theory]
    [InlineData(64)]    // Vector512 halves of 32
    [InlineData(128)]
    [InlineData(48)]    // one Vector512 block and one Vector256 block
    [InlineData(20)]    // one Vector256 block and a scalar tail of 2
    [InlineData(6)]     // scalar only
    public void RopeIsBitwiseTheScalarRotation(int headDim)
    {
        const int heads = 3;
        var table = new RopeTable(Config(headDim), 300);
        foreach (int pos in new[] { 0, 1, 17, 299 })
        {
            var vec = Random(heads * headDim, pos + headDim);
            var expected = (float[])vec.Clone();
            var cos = table.Cos(pos);
            var sin = table.Sin(pos);
            int half = headDim / 2;
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    int a = h * headDim + i, b = a + half;
                    float x0 = expected[a], x1 = expected[b];
                    float p = x0 * cos[i], q = x1 * sin[i], r = x1 * cos[i], s = x0 * sin[i];   // each product rounded
                    expected[a] = p - q;
                    expected[b] = r + s;
                }
            Ops.Rope(vec, heads, headDim, cos, sin);
            Assert.Equal(0, Compare.BitsDiffer(expected, vec));
        }
    }

    [Fact]
    public void RopeRefusesShortBuffers()
    {
        var table = new RopeTable(Config(64), 8);
        Assert.Throws<ArgumentException>(() => Ops.Rope(new float[3 * 64 - 1], 3, 64, table.Cos(1), table.Sin(1)));
    }

    [Theory]
    [InlineData(1, 40)]      // decode-sized: on the calling thread
    [InlineData(64, 576)]    // the fewest rows the pool shares
    [InlineData(203, 576)]   // a last chunk of 11 rows
    [InlineData(130, 20)]
    public void RmsNormSharedByThePoolIsBitwiseRowByRow(int rows, int dim)
    {
        using var kernels = new CpuKernels(Simd.Best, workers: 2);
        var x = Random(rows * dim, rows);
        var weight = Random(dim, 7);
        var y = Random(rows * dim, 8);   // stale contents must not matter
        kernels.RmsNorm(y, x, weight, 1e-5f, rows);
        var expected = new float[rows * dim];
        for (int i = 0; i < rows; i++) Ops.RmsNorm(expected.AsSpan(i * dim, dim), x.AsSpan(i * dim, dim), weight, 1e-5f);
        Assert.Equal(0, Compare.BitsDiffer(expected, y));
    }

    /// <summary>Tokens of three sequences (a managed f32 cache, a managed bf16 cache and pool pages, each already
    /// holding a few positions), rotated and written by the kernels' pass and by the old per-token loop: the rotated
    /// queries and keys and every cached row bitwise equal.</summary>
    [Theory]
    [InlineData(5, 7, 3)]        // a decode-sized batch: on the calling thread
    [InlineData(70, 40, 93)]     // 203 tokens: the pool's chunks, the last one short, cross sequence boundaries
    [InlineData(1, 130, 1)]
    public void RopeAndCacheSharedByThePoolIsBitwiseTokenByToken(int countA, int countB, int countC)
    {
        const int hd = 64, heads = 3, kvHeads = 1, layer = 1;
        var config = Config(hd);
        int qDim = heads * hd, kvDim = kvHeads * hd, tokens = countA + countB + countC;
        var rope = new RopeTable(config, 512);
        using var pool = new PagePool(2L * PagedKvCache.PagesFor(config, config.HiddenSize, 256) * config.HiddenSize * sizeof(float), config.HiddenSize);

        (IKvCache[] Caches, int[] Positions) Sequences(int id)
        {
            var a = new KvCache(config.NumLayers, kvDim, 256);
            var b = new KvCache(config.NumLayers, kvDim, 256, 16, KvCacheFormat.Bf16);
            var c = PagedKvCache.For(pool, config, sequenceId: id, maxTokens: 256);
            var caches = new IKvCache[tokens];
            var positions = new int[tokens];
            int t = 0;
            foreach (var (cache, start, count) in new (IKvCache, int, int)[] { (a, 3, countA), (b, 17, countB), (c, 2, countC) })
            {
                cache.Reserve(start + count);
                cache.Advance(start);
                for (int j = 0; j < count; j++, t++) (caches[t], positions[t]) = (cache, start + j);
            }
            return (caches, positions);
        }

        var q = Random(tokens * qDim, 1);
        var k = Random(tokens * kvDim, 2);
        var v = Random(tokens * kvDim, 3);

        var (shared, positions) = Sequences(0);
        var qs = (float[])q.Clone();
        var ks = (float[])k.Clone();
        using (var kernels = new CpuKernels(Simd.Best, workers: 2))
            kernels.RopeAndCache(qs, ks, v, tokens, heads, kvHeads, hd, positions, shared, layer, rope);

        var (alone, _) = Sequences(1);
        var qa = (float[])q.Clone();
        var ka = (float[])k.Clone();
        for (int t = 0; t < tokens; t++)
        {
            int pos = positions[t];
            Ops.Rope(qa.AsSpan(t * qDim, qDim), heads, hd, rope.Cos(pos), rope.Sin(pos));
            Ops.Rope(ka.AsSpan(t * kvDim, kvDim), kvHeads, hd, rope.Cos(pos), rope.Sin(pos));
            alone[t].Write(layer, pos, ka.AsSpan(t * kvDim, kvDim), v.AsSpan(t * kvDim, kvDim));
        }

        Assert.Equal(0, Compare.BitsDiffer(qa, qs));
        Assert.Equal(0, Compare.BitsDiffer(ka, ks));
        for (int t = 0; t < tokens; t++)
            for (int i = 0; i < kvDim; i++)
            {
                int pos = positions[t];
                Assert.Equal(alone[t].KeyAt(layer, pos, i), shared[t].KeyAt(layer, pos, i));
                Assert.Equal(alone[t].ValueAt(layer, pos, i), shared[t].ValueAt(layer, pos, i));
                // the rows hold the rotated keys and the values (bf16: rounded), not what was there
                Assert.NotEqual(0f, shared[t].ValueAt(layer, pos, i));
            }
    }
}
