using Loom.Inference.Adapters;
using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;

namespace Loom.Inference.Tests.Adapters;

/// <summary>The adapter store: registration all-or-nothing, pool residency with pins and LRU eviction, the
/// bytes-bounded host cache, prefetch, and the metrics snapshot.</summary>
public sealed class AdapterStoreTests : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
    private static readonly LoraTarget[] Targets = [LoraTarget.QProj, LoraTarget.VProj];
    private readonly List<TempAdapter> _temps = [];

    /// <summary>A rank-4 q/v adapter: 2 layers × 2 modules × 4 rows × (1 + 1) pages = 32 pages.</summary>
    private string NewAdapter(int seed, int rank = 4)
    {
        var t = TempAdapter.Random(Config, rank, Targets, seed);
        _temps.Add(t);
        return t.Path;
    }

    private static PagePool Pool(int pages) => new(pages * 64L * 4, 64);

    public void Dispose() { foreach (var t in _temps) t.Dispose(); }

    [Fact]
    public void ResidentAdaptersArePinnedAndEvictedLeastRecentlyUsedFirst()
    {
        using var pool = Pool(100); // room for three 32-page adapters
        var store = new AdapterStore(Config, pool);
        for (int i = 0; i < 4; i++) store.Register($"a{i}", NewAdapter(i));
        Assert.Equal(32, store.PagesOf("a0"));

        var r0 = store.EnsureResident("a0")!;
        var r1 = store.EnsureResident("a1")!;
        var r2 = store.EnsureResident("a2")!;
        Assert.Equal(96, pool.Usage.AdapterPages);
        Assert.Same(r0, store.EnsureResident("a0")); // resident: same pages, second pin
        store.Release(r0);
        store.Release(r1);
        // a0 is pinned once more; a1 is the least recently used unpinned adapter
        var r3 = store.EnsureResident("a3")!;
        Assert.True(r1.IsFreed);
        Assert.False(store.IsResident("a1"));
        Assert.True(store.IsResident("a0") && store.IsResident("a2") && store.IsResident("a3"));
        // everything pinned now: no room for a1, and nothing was evicted trying
        Assert.Null(store.EnsureResident("a1"));
        Assert.Equal(3, store.Metrics().AdaptersInPool);
        Assert.Null(pool.Audit());

        store.Release(r0);
        store.Release(r2);
        store.Release(r3);
        Assert.Throws<InvalidOperationException>(() => store.Release(r3));
        var m = store.Metrics();
        Assert.Equal((4, 3, 1L, 4L), (m.Registered, m.AdaptersInPool, m.PoolEvictions, m.PoolLoads));
        Assert.Equal(new PoolUsageSnapshot(100, 4, 0, 96, 256), m.Pool);
    }

    [Fact]
    public void MakeRoomFreesUnpinnedAdaptersForKv()
    {
        using var pool = Pool(100);
        var store = new AdapterStore(Config, pool);
        store.Register("a", NewAdapter(1));
        store.Register("b", NewAdapter(2));
        var a = store.EnsureResident("a")!;
        store.Release(store.EnsureResident("b")!);
        Assert.Equal(36, pool.FreePages);
        Assert.Equal((32, 0, 0), (store.ReclaimablePages, store.PagesToLoad("a"), store.PagesToLoad("b"))); // both resident, only b unpinned
        using var kv = PagedKvCache.For(pool, Config, 1, 200); // 2 tokens per page, 4 pages per block
        Assert.False(kv.TryReserve(30));                        // needs 60 pages, 36 free
        Assert.Equal(36, pool.FreePages);
        Assert.True(store.MakeRoom(kv.PagesToReserve(30)));     // b (unpinned) goes, a stays
        Assert.True(kv.TryReserve(30));
        Assert.True(store.IsResident("a"));
        Assert.False(store.IsResident("b"));
        Assert.Equal((0, 32), (store.ReclaimablePages, store.PagesToLoad("b")));
        Assert.False(store.MakeRoom(100));                      // a is pinned
        var m = store.Metrics();
        Assert.Equal((60, 32, 8), (m.Pool.KvPages, m.Pool.AdapterPages, m.Pool.FreePages));
        store.Release(a);
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void HostCacheStaysWithinItsBytesLeastRecentlyUsedFirst()
    {
        using var pool = Pool(1000);
        long bytes = AdapterImage.Build(PeftAdapter.Load(NewAdapter(0), Config), 64).Bytes; // the host copy is the pool-page image
        var store = new AdapterStore(Config, pool, new AdapterStoreOptions { HostCacheBytes = 2 * bytes + 10 });
        store.Register("a", NewAdapter(1));
        store.Register("b", NewAdapter(2));
        Assert.True(store.IsInHostCache("a") && store.IsInHostCache("b"));
        store.Release(store.EnsureResident("a")!);               // touches a: b is now least recently used
        store.Register("c", NewAdapter(3));
        Assert.True(store.IsInHostCache("a") && store.IsInHostCache("c"));
        Assert.False(store.IsInHostCache("b"));
        var m = store.Metrics();
        Assert.Equal((2, 2 * bytes, 1L, 3L), (m.AdaptersInHostCache, m.HostCacheBytes, m.HostEvictions, m.DiskLoads));
        store.Release(store.EnsureResident("b")!);               // host miss: read from disk again
        Assert.Equal(4L, store.Metrics().DiskLoads);
        Assert.True(store.Metrics().HostCacheBytes <= 2 * bytes + 10);
    }

    [Fact]
    public async Task PrefetchWarmsTheHostCache()
    {
        using var pool = Pool(1000);
        string fa = NewAdapter(3), fb = NewAdapter(4);
        long one = AdapterImage.Build(PeftAdapter.Load(fa, Config), 64).Bytes;
        var s = new AdapterStore(Config, pool, new AdapterStoreOptions { HostCacheBytes = one });
        s.Register("p", fa);
        s.Register("q", fb);                                     // pushes p out of the one-adapter host cache
        Assert.False(s.IsInHostCache("p"));
        long loads = s.Metrics().DiskLoads;
        await s.Prefetch(["p", "unknown", "p"]);
        Assert.True(s.IsInHostCache("p"));
        Assert.Equal(loads + 1, s.Metrics().DiskLoads);
        s.Release(s.EnsureResident("p")!);                       // no disk read: it was prefetched
        Assert.Equal(loads + 1, s.Metrics().DiskLoads);
        await s.Prefetch(["p"]);                                 // resident: nothing to do
        Assert.Equal(loads + 1, s.Metrics().DiskLoads);
    }

    [Fact]
    public async Task PrefetchOfAnAdapterCorruptedOnDiskIsCountedAndEnsureResidentThrows()
    {
        using var pool = Pool(1000);
        var t = TempAdapter.Random(Config, 4, Targets, 7);
        _temps.Add(t);
        var s = new AdapterStore(Config, pool, new AdapterStoreOptions { HostCacheBytes = 1 });
        s.Register("a", t.Path);
        File.WriteAllBytes(t.Weights, [9, 9, 9]);
        await s.Prefetch(["a"]);
        Assert.Equal(1L, s.Metrics().PrefetchFailures);
        var e = Assert.Throws<AdapterFormatException>(() => s.EnsureResident("a"));
        Assert.Equal(t.Weights, e.File);
        Assert.Equal(0, pool.Usage.AdapterPages);
    }

    [Fact]
    public void FailedRegistrationLeavesNothingBehind()
    {
        using var pool = Pool(1000);
        var store = new AdapterStore(Config, pool, new AdapterStoreOptions { MaxRank = 8 });
        var before = store.Metrics();
        Assert.Throws<AdapterFormatException>(() => store.Register("big", NewAdapter(1, rank: 16)));
        using (var bad = TempAdapter.CopyOf("llama3_scaled_bf16_r4")) // another base model
            Assert.Throws<AdapterFormatException>(() => store.Register("other", bad.Path));
        Assert.Throws<AdapterFormatException>(() => store.Register("nowhere", "/nonexistent/adapter"));
        Assert.False(store.IsRegistered("big") || store.IsRegistered("other") || store.IsRegistered("nowhere"));
        Assert.Equal(before with { DiskLoads = 0 }, store.Metrics() with { DiskLoads = 0 });
        Assert.Throws<KeyNotFoundException>(() => store.EnsureResident("big"));
        // a good one under a failed id registers fine, and an id cannot be taken twice
        store.Register("big", NewAdapter(2, rank: 8));
        Assert.Throws<InvalidOperationException>(() => store.Register("big", NewAdapter(3)));
        Assert.Equal(1, store.Metrics().Registered);
    }

    [Fact]
    public void UnregisterFreesPagesButNotWhilePinned()
    {
        using var pool = Pool(100);
        var store = new AdapterStore(Config, pool);
        store.Register("a", NewAdapter(1));
        var r = store.EnsureResident("a")!;
        Assert.Throws<InvalidOperationException>(() => store.Unregister("a"));
        store.Release(r);
        Assert.True(store.Unregister("a"));
        Assert.True(r.IsFreed);
        Assert.Equal(100, pool.FreePages);
        var m = store.Metrics();
        Assert.Equal((0, 0, 0, 0L), (m.Registered, m.AdaptersInPool, m.AdaptersInHostCache, m.HostCacheBytes));
    }

    [Fact]
    public async Task ConcurrentPrefetchAndResidencyKeepTheAccountingExact()
    {
        using var pool = Pool(200);
        long one = PeftAdapter.Load(NewAdapter(0), Config).WeightBytes;
        var store = new AdapterStore(Config, pool, new AdapterStoreOptions { HostCacheBytes = 3 * one });
        for (int i = 0; i < 8; i++) store.Register($"a{i}", NewAdapter(10 + i));
        var rng = new Random(42);
        var prefetches = new List<Task>();
        for (int step = 0; step < 60; step++)
        {
            prefetches.Add(store.Prefetch([$"a{rng.Next(8)}", $"a{rng.Next(8)}"]));
            var batch = Enumerable.Range(0, 3).Select(_ => $"a{rng.Next(8)}").Distinct().Select(id => store.EnsureResident(id)!).ToList();
            Assert.All(batch, Assert.NotNull);
            foreach (var r in batch) store.Release(r);
            Assert.Null(pool.Audit());
        }
        await Task.WhenAll(prefetches);
        var m = store.Metrics();
        Assert.True(m.HostCacheBytes <= 3 * one);
        Assert.Equal(m.AdaptersInPool * 32, m.Pool.AdapterPages);
        Assert.Equal(0L, m.PrefetchFailures);
    }

    [Fact]
    public async Task AReadRacingAnUnregisterAndAReRegisterNeverServesTheOldWeightsUnderTheNewEntry()
    {
        using var pool = Pool(200);
        var store = new AdapterStore(Config, pool, new AdapterStoreOptions { HostCacheBytes = 1 }); // nothing cached: EnsureResident reads the folder
        string oldFolder = NewAdapter(1, rank: 2), newFolder = NewAdapter(2, rank: 4);
        store.Register("a", oldFolder);
        using var reading = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        store.BeforeRead = folder =>
        {
            if (folder != oldFolder) return;
            reading.Set();
            Assert.True(proceed.Wait(TimeSpan.FromSeconds(30)));
        };
        var resident = Task.Run(() => store.EnsureResident("a"));
        Assert.True(reading.Wait(TimeSpan.FromSeconds(30)));
        Assert.True(store.Unregister("a"));      // while the old folder is being read
        store.Register("a", newFolder);          // the same id, other weights (rank 4)
        proceed.Set();

        var r = (await resident.WaitAsync(TimeSpan.FromSeconds(30)))!;
        Assert.Equal(4, r.Rank);
        Assert.Equal(store.PagesOf("a"), r.PageCount);
        Assert.True(store.IsResident("a"));
        store.Release(r);
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void AValidatedRegistrationReadsOnlyTheConfigAndTheWeightsWhenFirstNeeded()
    {
        using var pool = Pool(1000);
        string folder = NewAdapter(3);
        var full = new AdapterStore(Config, pool);
        full.Register("full", folder);
        var s = new AdapterStore(Config, pool);
        var reads = new List<string>();
        s.BeforeRead = reads.Add;
        s.Register("v", folder, validated: true);
        Assert.Empty(reads);
        Assert.Equal(0L, s.Metrics().DiskLoads);
        Assert.False(s.IsInHostCache("v"));
        Assert.Equal(full.PagesOf("full"), s.PagesOf("v"));
        Assert.Equal(32, s.PagesOf("v"));

        var r = s.EnsureResident("v")!;
        Assert.Equal([folder], reads);
        Assert.True(s.IsInHostCache("v"));
        Assert.Equal(32, r.PageCount);
        s.Release(r);
    }

    [Fact]
    public void AValidatedRegistrationStillChecksTheConfigAndTheWeightsWhenTheyAreRead()
    {
        using var pool = Pool(1000);
        var s = new AdapterStore(Config, pool, new AdapterStoreOptions { MaxRank = 8 });
        Assert.Throws<AdapterFormatException>(() => s.Register("big", NewAdapter(1, rank: 16), validated: true));
        Assert.Throws<AdapterFormatException>(() => s.Register("nowhere", "/nonexistent/adapter", validated: true));
        using (var other = TempAdapter.CopyOf("llama3_scaled_bf16_r4")) // another base model: its layers_to_transform or shapes
        {
            var e = Record.Exception(() => s.Register("other", other.Path, validated: true));
            if (e is null) Assert.Throws<AdapterFormatException>(() => s.EnsureResident("other"));
            else Assert.IsType<AdapterFormatException>(e);
        }

        // corrupted after registration: refused when first read, nothing taken from the pool
        var t = TempAdapter.Random(Config, 4, Targets, 5);
        _temps.Add(t);
        s.Register("corrupt", t.Path, validated: true);
        File.WriteAllBytes(t.Weights, [1, 2, 3]);
        Assert.Equal(t.Weights, Assert.Throws<AdapterFormatException>(() => s.EnsureResident("corrupt")).File);

        // rewritten with another rank after registration: the pages it was admitted with no longer hold; refused
        var u = TempAdapter.Random(Config, 4, Targets, 6);
        _temps.Add(u);
        s.Register("changed", u.Path, validated: true);
        var rank2 = TempAdapter.Random(Config, 2, Targets, 7);
        _temps.Add(rank2);
        foreach (var f in Directory.GetFiles(rank2.Path)) File.Copy(f, Path.Combine(u.Path, Path.GetFileName(f)), overwrite: true);
        Assert.Contains("changed on disk", Assert.Throws<AdapterFormatException>(() => s.EnsureResident("changed")).Message);
        Assert.Equal(0, pool.Usage.AdapterPages);
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void TheHostImageLoadsIntoPoolPagesAsAAndBTransposed()
    {
        using var pool = Pool(1000);
        string folder = NewAdapter(9, rank: 8);
        var adapter = PeftAdapter.Load(folder, Config);
        var image = AdapterImage.Build(adapter, pool.PageFloats);
        Assert.Equal(AdapterImage.PagesFor(adapter.Config, Config, pool.PageFloats), image.PageCount);
        pool.TryAllocate(PageOwner.Kv(1), new int[7]); // the adapter's pages are not the first ones
        var r = AdapterResidency.TryCreate(pool, "a", 1, image)!;
        foreach (var m in adapter.Modules)
        {
            var a = r.A(m.Layer, m.Target);
            var bt = r.BT(m.Layer, m.Target);
            for (int i = 0; i < m.Rank; i++)
            {
                for (int c = 0; c < m.In; c++) Assert.Equal(m.A[i * m.In + c], a[i, c]);
                for (int o = 0; o < m.Out; o++) Assert.Equal(m.B[o * m.Rank + i], bt[i, o]);
            }
        }
        Assert.Equal(image.PageCount, pool.Usage.AdapterPages);
    }
}
