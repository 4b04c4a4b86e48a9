using Loom.Inference.Memory;

namespace Loom.Inference.Tests.Memory;

/// <summary>Pool accounting: every page is free or owned by exactly one owner, counters match, nothing grows.</summary>
public sealed class PagePoolTests
{
    [Fact]
    public void RandomAllocationsAndFreesKeepTheAccountingExact()
    {
        using var pool = new PagePool(bytes: 257 * 64 * sizeof(float) + 100, pageFloats: 64);
        Assert.Equal(257, pool.PageCount);
        var rng = new Random(1234);
        var held = new Dictionary<PageOwner, List<int>>();
        var owners = Enumerable.Range(0, 6).Select(i => PageOwner.Kv(i)).Concat(Enumerable.Range(0, 6).Select(i => PageOwner.Adapter(i))).ToArray();
        int refused = 0;
        for (int step = 0; step < 3000; step++)
        {
            var owner = owners[rng.Next(owners.Length)];
            if (!held.TryGetValue(owner, out var mine)) held[owner] = mine = [];
            if (rng.Next(3) > 0)
            {
                var ids = new int[rng.Next(0, 40)];
                int freeBefore = pool.FreePages;
                bool ok = pool.TryAllocate(owner, ids);
                Assert.Equal(ids.Length <= freeBefore, ok);
                if (ok) mine.AddRange(ids);
                else { refused++; Assert.Equal(freeBefore, pool.FreePages); }
            }
            else if (mine.Count > 0)
            {
                // free a random subset, in random order
                var order = mine.OrderBy(_ => rng.Next()).ToList();
                var some = order.Take(rng.Next(1, order.Count + 1)).ToArray();
                pool.Free(owner, some);
                foreach (int id in some) mine.Remove(id);
            }
            Assert.Null(pool.Audit());
            var u = pool.Usage;
            int kv = held.Where(h => h.Key.Kind == PageOwnerKind.Kv).Sum(h => h.Value.Count);
            int ad = held.Where(h => h.Key.Kind == PageOwnerKind.Adapter).Sum(h => h.Value.Count);
            Assert.Equal((kv, ad, pool.PageCount - kv - ad), (u.KvPages, u.AdapterPages, u.FreePages));
            Assert.Equal(pool.PageCount, u.KvPages + u.AdapterPages + u.FreePages);
        }
        Assert.True(refused > 0, "the run never filled the pool");
        // every page is owned by exactly the owner the model says, and no page is held twice
        var all = held.SelectMany(h => h.Value).ToList();
        Assert.Equal(all.Count, all.Distinct().Count());
        foreach (var (owner, ids) in held)
            foreach (int id in ids) Assert.Equal(owner, pool.OwnerOf(id));
        foreach (var (owner, ids) in held) pool.Free(owner, ids.ToArray());
        Assert.Equal(pool.PageCount, pool.FreePages);
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void FreeingSomeoneElsesPageFreesNothing()
    {
        using var pool = new PagePool(8 * 16 * 4, 16);
        var a = new int[3];
        var b = new int[2];
        Assert.True(pool.TryAllocate(PageOwner.Kv(1), a));
        Assert.True(pool.TryAllocate(PageOwner.Adapter(1), b));
        Assert.Throws<InvalidOperationException>(() => pool.Free(PageOwner.Kv(1), [a[0], a[1], b[0]]));
        Assert.Throws<InvalidOperationException>(() => pool.Free(PageOwner.Kv(1), [a[0], a[0]]));
        Assert.Null(pool.Audit());
        Assert.Equal(3, pool.FreePages);
        Assert.Equal(PageOwner.Kv(1), pool.OwnerOf(a[0]));
        pool.Free(PageOwner.Kv(1), a);
        Assert.Throws<InvalidOperationException>(() => pool.Free(PageOwner.Kv(1), [a[0]]));
        Assert.Equal(6, pool.FreePages);
    }

    [Fact]
    public void ThePoolNeverGrowsPastItsSize()
    {
        using var pool = new PagePool(10 * 32 * 4, 32);
        Assert.Equal(10, pool.PageCount);
        Assert.Equal(10L * 32 * 4, pool.Bytes);
        Assert.True(pool.TryAllocate(PageOwner.Kv(0), new int[10]));
        Assert.False(pool.TryAllocate(PageOwner.Kv(1), new int[1]));
        Assert.Equal(0, pool.FreePages);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagePool(100, 32));
    }

    [Fact]
    public void PagesDoNotOverlap()
    {
        using var pool = new PagePool(5 * 8 * 4, 8);
        var ids = new int[5];
        Assert.True(pool.TryAllocate(PageOwner.Adapter(3), ids));
        foreach (int id in ids) pool.Page(id).Fill(id + 1);
        foreach (int id in ids) Assert.All(pool.Page(id).ToArray(), v => Assert.Equal(id + 1, v));
    }
}
