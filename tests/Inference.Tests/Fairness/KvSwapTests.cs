using Loom.Inference.Memory;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Swap space: a cache copied to host memory and back holds the same bytes in other pages.</summary>
public sealed class KvSwapTests
{
    private static float[][] Contents(PagedKvCache c)
    {
        var all = new List<float[]>();
        for (int layer = 0; layer < c.Layers; layer++)
            for (int pos = 0, block = 0; pos < c.Length; pos += c.BlockSize, block++)
            {
                int n = Math.Min(c.BlockSize, c.Length - pos) * c.KvDim;
                all.Add(c.Keys(layer, block)[..n].ToArray());
                all.Add(c.Values(layer, block)[..n].ToArray());
            }
        return [.. all];
    }

    [Theory]
    [InlineData(2, 16, 37)]      // several tokens per page, a partial last page
    [InlineData(4, 64, 1100)]    // one token per page, over 1 MiB: copied in parallel, adjacent pages as one run
    [InlineData(3, 24, 21)]      // pages not filled to the end (64 floats, 2 x 24 used): copied one by one
    public void PagesSwappedOutAndBackHoldTheSameBytes(int layers, int kvDim, int tokens)
    {
        using var pool = new PagePool(2L * layers * (tokens + 64) * 64 * sizeof(float), 64);
        var rng = new Random(tokens);
        var a = new PagedKvCache(pool, 1, layers, kvDim, tokens + 8);
        a.Reserve(tokens);
        for (int layer = 0; layer < layers; layer++)
            for (int block = 0; block * a.BlockSize < tokens; block++)
            {
                foreach (ref float x in a.Keys(layer, block)) x = rng.NextSingle();
                foreach (ref float x in a.Values(layer, block)) x = rng.NextSingle();
            }
        a.Advance(tokens);
        var before = Contents(a);
        // whole pages move: the positions of the last, partly filled block too
        long bytes = (tokens + a.BlockSize - 1) / a.BlockSize * 2L * layers * a.BlockSize * kvDim * sizeof(float);

        var space = new KvSwapSpace(pool, bytes);
        var swapped = space.SwapOut(a);
        Assert.NotNull(swapped);
        Assert.Equal(bytes, space.UsedBytes);
        Assert.Null(space.SwapOut(a)); // full
        a.Release();

        // another cache takes the freed pages first, so the swapped one comes back into different pages
        var other = new PagedKvCache(pool, 2, layers, kvDim, 16);
        other.Reserve(16);
        var b = new PagedKvCache(pool, 3, layers, kvDim, tokens + 8);
        b.Reserve(tokens);
        space.SwapIn(swapped!, b);
        Assert.Equal(tokens, b.Length);
        var after = Contents(b);
        Assert.Equal(before.Length, after.Length);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
        Assert.Equal((bytes, bytes, 0L, 1L, 1L), (space.BytesOut, space.BytesIn, space.UsedBytes, space.SwapOuts, space.SwapIns));
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void SwapInRefusesACacheWithoutRoomAndDropFreesTheHostCopy()
    {
        using var pool = new PagePool(64 * 64 * sizeof(float), 64);
        var a = new PagedKvCache(pool, 1, 2, 16, 32);
        a.Reserve(10);
        a.Advance(10);
        var space = new KvSwapSpace(pool, 1 << 20);
        var swapped = space.SwapOut(a)!;
        a.Release();
        var b = new PagedKvCache(pool, 2, 2, 16, 32);
        b.Reserve(4);
        Assert.Throws<InvalidOperationException>(() => space.SwapIn(swapped, b));
        space.Drop(swapped);
        space.Drop(swapped);
        Assert.Equal(0, space.UsedBytes);
        Assert.Null(space.SwapOut(new PagedKvCache(pool, 3, 2, 16, 8))); // nothing to copy
    }
}
