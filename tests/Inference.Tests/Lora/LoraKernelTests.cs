using Loom.Inference.Adapters;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>LoRA shrink/expand over pool pages against the torch oracle, the scalar twin, and across evict/reload.</summary>
public sealed class LoraKernelTests(ITestOutputHelper log)
{
    public static TheoryData<string, SimdLevel> GoldenCases()
    {
        var d = new TheoryData<string, SimdLevel>();
        foreach (var n in LoraGolden.Names)
        {
            d.Add(n, Simd.Best);
            if (Simd.Best != SimdLevel.Vector256) d.Add(n, SimdLevel.Vector256);   // on a machine without AVX-512 the first one is it
            d.Add(n, SimdLevel.Scalar);
        }
        return d;
    }

    /// <summary>The delta y = scale · (x Aᵀ) Bᵀ at one module, read from pool pages, equals torch's (float64) to 1e-5.</summary>
    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void DeltaFromPoolPagesMatchesTheOracle(string name, SimdLevel level)
    {
        var g = LoraGolden.Load(name);
        var config = g.BaseConfig;
        var adapter = PeftAdapter.Load(g.Directory, config);
        using var pool = new PagePool(4096L * config.HiddenSize * 4, config.HiddenSize);
        var r = AdapterResidency.TryCreate(pool, name, 1, adapter)!;
        Assert.Equal(AdapterResidency.PagesFor(adapter, pool.PageFloats), pool.Usage.AdapterPages);
        foreach (var (layer, target) in g.Deltas)
        {
            var (x, expected) = g.Delta(layer, target);
            var (inDim, outDim) = LoraTargets.Dims(config, target);
            int n = x.Length / inDim;
            var y = new float[n * outDim];
            var scratch = new float[n * adapter.Config.Rank];
            LoraKernel.Apply(y, x, inDim, outDim, [new LoraSegment(0, n, r)], layer, target, scratch, level);
            Compare.Close(log, $"{name} {LoraTargets.Name(target)}@{layer} {level}", y, expected, 1e-5);
            var naive = new float[n * outDim];
            NaiveLora.Apply(naive, x, inDim, outDim, [new LoraSegment(0, n, r)], layer, target);
            Compare.Close(log, $"{name} naive", naive, expected, 1e-6);
        }
    }

    /// <summary>A batch of segments with mixed ranks (2, 8, 16), a base-only segment and an adapter that does not
    /// target the module: the SIMD kernel equals the scalar twin, and base-only rows are untouched.</summary>
    [SkippableTheory]
    [InlineData(SimdLevel.Vector512)]
    [InlineData(SimdLevel.Vector256)]
    [InlineData(SimdLevel.Scalar)]
    public void MixedRanksInOneBatchMatchTheScalarTwin(SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var a2 = TempAdapter.Random(config, 2, [LoraTarget.DownProj, LoraTarget.QProj], seed: 1);
        using var a8 = TempAdapter.Random(config, 8, [LoraTarget.DownProj], seed: 2, rsLora: true);
        using var a16 = TempAdapter.Random(config, 16, [LoraTarget.DownProj, LoraTarget.UpProj], seed: 3);
        using var aq = TempAdapter.Random(config, 4, [LoraTarget.QProj], seed: 4);
        using var pool = new PagePool(4096L * 64 * 4, 64);
        var res = new[] { a2, a8, a16, aq }.Select((t, i) => AdapterResidency.TryCreate(pool, $"a{i}", i + 1, PeftAdapter.Load(t.Path, config))!).ToArray();
        var (inDim, outDim) = LoraTargets.Dims(config, LoraTarget.DownProj); // 160 -> 64: A rows span 3 pages
        LoraSegment[] segs =
        [
            new(0, 3, res[1]), new(3, 2, null), new(5, 40, res[2]), new(45, 1, res[0]), new(46, 4, res[3]), new(50, 7, res[1]),
        ];
        int n = 57;
        var rng = new Random(9);
        var x = TempAdapter.RandomArray(rng, n * inDim);
        var y0 = TempAdapter.RandomArray(rng, n * outDim);
        var fast = y0.ToArray();
        var naive = y0.ToArray();
        LoraKernel.Apply(fast, x, inDim, outDim, segs, 1, LoraTarget.DownProj, new float[n * 16], level);
        NaiveLora.Apply(naive, x, inDim, outDim, segs, 1, LoraTarget.DownProj);
        Compare.Close(log, $"mixed ranks {level}", fast, naive, 1e-5);
        foreach (int t in new[] { 3, 4, 46, 47, 48, 49 }) // base-only and non-targeting segments
            Assert.Equal(y0.AsSpan(t * outDim, outDim).ToArray(), fast.AsSpan(t * outDim, outDim).ToArray());
        Assert.NotEqual(y0.AsSpan(0, outDim).ToArray(), fast.AsSpan(0, outDim).ToArray());
    }

    /// <summary>Tokens are computed four at a time; a token's delta must not depend on its neighbours
    /// (batched == one at a time, bit for bit), at every SIMD level.</summary>
    [SkippableTheory]
    [InlineData(SimdLevel.Vector512)]
    [InlineData(SimdLevel.Vector256)]
    [InlineData(SimdLevel.Scalar)]
    public void ATokensDeltaDoesNotDependOnItsBatch(SimdLevel level)
    {
        Skip.If(level == SimdLevel.Vector512 && Simd.Best != SimdLevel.Vector512, "no AVX-512 on this machine: the Vector512 kernels are not tested here");
        var g = LoraGolden.Load("llama_gqa_tied_r8");
        using var pool = new PagePool(4096L * 64 * 4, 64);
        var r = AdapterResidency.TryCreate(pool, "g", 1, PeftAdapter.Load(g.Directory, g.BaseConfig))!;
        int n = 11, inDim = 160, outDim = 64;
        var x = TempAdapter.RandomArray(new Random(5), n * inDim);
        var batched = new float[n * outDim];
        LoraKernel.Apply(batched, x, inDim, outDim, [new LoraSegment(0, n, r)], 0, LoraTarget.DownProj, new float[n * 8], level);
        for (int t = 0; t < n; t++)
        {
            var alone = new float[outDim];
            LoraKernel.Apply(alone, x.AsSpan(t * inDim, inDim), inDim, outDim, [new LoraSegment(0, 1, r)], 0, LoraTarget.DownProj, new float[8], level);
            Assert.Equal(alone, batched.AsSpan(t * outDim, outDim).ToArray());
        }
    }

    /// <summary>Under memory pressure an adapter is evicted from the pool and later reloaded into other pages:
    /// the delta computed from its pages is bit-identical before and after.</summary>
    [Fact]
    public void EvictAndReloadChangesNoOutput()
    {
        var g = LoraGolden.Load("llama_gqa_tied_r8");
        var config = g.BaseConfig;
        using var other = TempAdapter.Random(config, 8, [LoraTarget.QProj, LoraTarget.VProj, LoraTarget.OProj, LoraTarget.DownProj], seed: 11);
        var probe = PeftAdapter.Load(g.Directory, config);
        int pages = AdapterResidency.PagesFor(probe, config.HiddenSize);
        using var pool = new PagePool((long)(pages + pages / 2) * config.HiddenSize * 4, config.HiddenSize); // room for one
        var store = new AdapterStore(config, pool, new AdapterStoreOptions { HostCacheBytes = AdapterImage.Build(probe, config.HiddenSize).Bytes }); // host holds one
        store.Register("golden", g.Directory);
        store.Register("other", other.Path);

        var (x, _) = g.Delta(1, LoraTarget.DownProj);
        float[] Delta(AdapterResidency r)
        {
            var y = new float[x.Length / 160 * 64];
            LoraKernel.Apply(y, x, 160, 64, [new LoraSegment(0, x.Length / 160, r)], 1, LoraTarget.DownProj, new float[64], Simd.Best);
            return y;
        }

        var first = store.EnsureResident("golden")!;
        int firstPage = PageOf(first);
        var before = Delta(first);
        store.Release(first);
        var o = store.EnsureResident("other")!;        // pressure: golden is evicted to make room
        Assert.True(first.IsFreed);
        Assert.False(store.IsResident("golden"));
        Assert.False(store.IsInHostCache("golden"));   // and the host cache dropped it for "other"
        // "other" now fills the pages golden had, so a reload cannot read golden's old bytes by accident
        Assert.Contains(firstPage, Enumerable.Range(0, pool.PageCount).Where(p => pool.OwnerOf(p) == o.Owner));
        store.Release(o);
        Assert.True(store.Evict("other"));
        Assert.True(pool.TryAllocate(PageOwner.Kv(1), new int[50])); // KV takes pages, so golden lands elsewhere
        var again = store.EnsureResident("golden")!;   // reload from disk into pages
        var after = Delta(again);
        Assert.Equal(before, after);
        var m = store.Metrics();
        int reloadPage = PageOf(again);
        log.WriteLine($"golden's first down_proj A page {firstPage}, after reload {reloadPage}; {m}");
        Assert.NotEqual(firstPage, reloadPage); // the free list hands pages back in another order
        // disk: 2 registrations, then every EnsureResident misses the one-adapter host cache
        Assert.Equal((2L, 3L, 5L, 4L), (m.PoolEvictions, m.PoolLoads, m.DiskLoads, m.HostEvictions));
    }

    private static int PageOf(AdapterResidency r)
    {
        var a = r.A(1, LoraTarget.DownProj);
        return a.Table[a.Offset];
    }
}
