using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Swap space: a cache copied to host memory and back holds the same bytes in other pages.</summary>
public sealed class KvSwapTests
{
    /// <summary>The bits of every valid key and value, block by block.</summary>
    private static int[][] Contents(PagedKvCache c)
    {
        var all = new List<int[]>();
        for (int layer = 0; layer < c.Layers; layer++)
            for (int pos = 0, block = 0; pos < c.Length; pos += c.BlockSize, block++)
            {
                int n = Math.Min(c.BlockSize, c.Length - pos) * c.KvDim;
                if (c.Format == KvCacheFormat.Bf16)
                {
                    all.Add([.. c.Keys16(layer, block)[..n].ToArray().Select(x => (int)x)]);
                    all.Add([.. c.Values16(layer, block)[..n].ToArray().Select(x => (int)x)]);
                }
                else
                {
                    all.Add([.. c.Keys(layer, block)[..n].ToArray().Select(BitConverter.SingleToInt32Bits)]);
                    all.Add([.. c.Values(layer, block)[..n].ToArray().Select(BitConverter.SingleToInt32Bits)]);
                }
            }
        return [.. all];
    }

    [Theory]
    [InlineData(2, 16, 37, KvCacheFormat.F32)]      // several tokens per page, a partial last page
    [InlineData(4, 64, 1100, KvCacheFormat.F32)]    // one token per page, over 1 MiB: copied in parallel, adjacent pages as one run
    [InlineData(3, 24, 21, KvCacheFormat.F32)]      // pages not filled to the end (64 floats, 2 x 24 used): copied one by one
    [InlineData(2, 16, 37, KvCacheFormat.Bf16)]     // 8 bf16 tokens per page, a partial last page
    [InlineData(4, 64, 2100, KvCacheFormat.Bf16)]   // 2 tokens per page, over 1 MiB: in parallel, adjacent pages as one run
    [InlineData(3, 24, 21, KvCacheFormat.Bf16)]     // 5 x 24 bf16 used of 128: copied one by one
    [InlineData(2, 128, 9, KvCacheFormat.Bf16)]     // a row of 128 bf16 fills a page of 64 floats
    public void PagesSwappedOutAndBackHoldTheSameBytes(int layers, int kvDim, int tokens, KvCacheFormat format)
    {
        using var pool = new PagePool(2L * layers * (tokens + 64) * 64 * sizeof(float), 64);
        var rng = new Random(tokens);
        var a = new PagedKvCache(pool, 1, layers, kvDim, tokens + 8, format);
        a.Reserve(tokens);
        var row = new float[kvDim];
        for (int layer = 0; layer < layers; layer++)
            for (int pos = 0; pos < a.Capacity; pos++)
            {
                for (int i = 0; i < kvDim; i++) row[i] = rng.NextSingle();
                a.Write(layer, pos, row, row.Reverse().ToArray());
            }
        a.Advance(tokens);
        var before = Contents(a);
        // whole pages move: the positions of the last, partly filled block too
        long bytes = (tokens + a.BlockSize - 1) / a.BlockSize * 2L * layers * a.BlockSize * kvDim * format.ElementBytes();
        Assert.Equal(bytes, KvSwapSpace.BytesFor(a));

        var space = new KvSwapSpace(pool, bytes);
        var swapped = space.SwapOut(a);
        Assert.NotNull(swapped);
        Assert.Equal(bytes, space.UsedBytes);
        Assert.Null(space.SwapOut(a)); // full
        a.Release();

        // another cache takes the freed pages first, so the swapped one comes back into different pages
        var other = new PagedKvCache(pool, 2, layers, kvDim, 16, format);
        other.Reserve(16);
        var b = new PagedKvCache(pool, 3, layers, kvDim, tokens + 8, format);
        b.Reserve(tokens);
        space.SwapIn(swapped!, b);
        Assert.Equal(tokens, b.Length);
        var after = Contents(b);
        Assert.Equal(before.Length, after.Length);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
        Assert.Equal((bytes, bytes, 0L, 1L, 1L), (space.BytesOut, space.BytesIn, space.UsedBytes, space.SwapOuts, space.SwapIns));
        Assert.Null(pool.Audit());
    }

    /// <summary>A bf16 swap copy goes back only into a bf16 cache (an f32 one of the same page bytes would read it as
    /// other numbers).</summary>
    [Fact]
    public void ABf16SwapCopyIsRefusedByAnF32Cache()
    {
        using var pool = new PagePool(64 * 64 * sizeof(float), 64);
        var a = new PagedKvCache(pool, 1, 2, 32, 32, KvCacheFormat.Bf16); // 4 tokens a page, 256 bytes used
        a.Reserve(8);
        a.Advance(8);
        var space = new KvSwapSpace(pool, 1 << 20);
        var swapped = space.SwapOut(a)!;
        a.Release();
        Assert.Equal(KvCacheFormat.Bf16, swapped.Format);
        var f32 = new PagedKvCache(pool, 2, 2, 16, 32); // 4 tokens a page, 256 bytes used: same pages, other format
        f32.Reserve(8);
        Assert.Throws<ArgumentException>(() => space.SwapIn(swapped, f32));
        space.Drop(swapped);
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
