using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Tests.Lora;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Gpu;

/// <summary>Each GPU kernel on ILGPU's CPU accelerator against the CPU kernel's scalar twin, relative error 1e-4 (f32).</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuKernelTests(ITestOutputHelper log) : IDisposable
{
    private const double Tolerance = 1e-4;
    private readonly GpuKernels _k = IlgpuCpu.Kernels.Value;
    private readonly List<IDisposable> _buffers = [];
    private Accelerator A => _k.Device.Accelerator;

    public void Dispose() { foreach (var b in _buffers) b.Dispose(); }

    private ArrayView<T> Up<T>(T[] values) where T : unmanaged
    {
        var b = A.Allocate1D<T>(Math.Max(1, values.Length));
        b.AsContiguous().SubView(0, values.Length).CopyFromCPU(values);
        _buffers.Add(b);
        return b.View;
    }

    private T[] Down<T>(ArrayView<T> v, int n) where T : unmanaged
    {
        var r = new T[n];
        v.SubView(0, n).CopyToCPU(r);
        return r;
    }

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new System.Random(seed);
        var r = new float[n];
        for (int i = 0; i < n; i++) r[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return r;
    }

    /// <summary>Decode shapes (1, 3 and 13 rows: one warp per output, eight tokens a pass) and prefill shapes (40 rows:
    /// tiles of 8 tokens), with sizes that fill no tile evenly, in f32 and bf16; 48 columns take the four-at-a-time loads.</summary>
    [Theory]
    [InlineData(WeightType.F32, 1, 45)]
    [InlineData(WeightType.F32, 3, 45)]
    [InlineData(WeightType.F32, 13, 48)]
    [InlineData(WeightType.F32, 40, 45)]
    [InlineData(WeightType.BF16, 1, 48)]
    [InlineData(WeightType.BF16, 13, 45)]
    [InlineData(WeightType.BF16, 40, 48)]
    public void MatMulMatchesTheScalarKernel(WeightType type, int n, int cols) => CheckMatMul(_k, type, n, cols);

    /// <summary>With accumulate the product is added to what the output holds (o_proj and down_proj add the residual so),
    /// in each kernel.</summary>
    [Theory]
    [InlineData(WeightType.BF16)]
    [InlineData(WeightType.F32)]
    public void MatMulAccumulatesIntoItsOutput(WeightType type)
    {
        CheckMatMul(_k, type, 3, 48, accumulate: true);
        CheckMatMul(_k, type, 40, 45, accumulate: true);
        CheckMatMul(CudaShaped.Value, type, 5, 48, accumulate: true);
        CheckMatMul(CudaShaped.Value, type, 70, 48, accumulate: true);
    }

    /// <summary>One launch over stacked q/k/v weights routes each output to its buffer and adds the bias (the bias and
    /// residual adds live in the matmul's store).</summary>
    [Theory]
    [InlineData(3)]
    [InlineData(40)]
    public void AStackedMatMulRoutesEachOutputAndAddsTheBias(int n)
    {
        const int cols = 48, q = 32, kv = 16, rows = q + 2 * kv;
        using var w = WeightMatrix.FromFloats(Random(rows * cols, 21), rows, cols, WeightType.BF16);
        var x = Random(n * cols, 22);
        var bias = Random(rows, 23);
        var all = new float[n * rows];
        new CpuKernels(SimdLevel.Scalar).MatMul(all, x, w, n);
        using var dw = new DeviceMatrix(A, w);
        var (dq, dk, dv) = (Up(new float[n * q]), Up(new float[n * kv]), Up(new float[n * kv]));
        _k.MatMulSplit(dq, dk, dv, Up(bias), Up(x), dw, n, q, q + kv);
        float[] Part(int from, int width) => Enumerable.Range(0, n * width).Select(i => all[i / width * rows + from + i % width] + bias[from + i % width]).ToArray();
        Compare.Close(log, $"stacked q n={n}", Down(dq, n * q), Part(0, q), Tolerance);
        Compare.Close(log, $"stacked k n={n}", Down(dk, n * kv), Part(q, kv), Tolerance);
        Compare.Close(log, $"stacked v n={n}", Down(dv, n * kv), Part(q + kv, kv), Tolerance);
    }

    /// <summary>An input that starts off an 8-byte boundary takes the decode kernel's one-at-a-time loads.</summary>
    [Theory]
    [InlineData(WeightType.F32)]
    [InlineData(WeightType.BF16)]
    public void MatMulOfAnUnalignedInputMatchesTheScalarKernel(WeightType type)
    {
        CheckMatMul(_k, type, 3, 48, inputOffset: 1);
        CheckMatMul(CudaShaped.Value, type, 6, 48, inputOffset: 1);
    }

    /// <summary>The kernels CUDA runs, on 256-thread groups of 32-thread warps (ILGPU's CPU accelerator set up as
    /// CUDA's groups): eight warps of <c>Rows</c> per group up to 32 tokens, the 64 × 64 <c>Tile64</c> tiles above.</summary>
    [Theory]
    [InlineData(WeightType.F32, 9, 45, "rows")]
    [InlineData(WeightType.BF16, 32, 48, "rows")]
    [InlineData(WeightType.BF16, 1, 48, "rows")]
    [InlineData(WeightType.F32, 6, 48, "rows")]
    [InlineData(WeightType.F32, 70, 45, "tile64")]
    [InlineData(WeightType.BF16, 70, 48, "tile64")]
    [InlineData(WeightType.BF16, 33, 45, "tile64")]
    public void MatMulOnCudaSizedGroupsMatchesTheScalarKernel(WeightType type, int n, int cols, string kernel)
    {
        var k = CudaShaped.Value;
        Assert.Equal(kernel, k.MatMulKernel(n));
        Assert.Equal(8, k.RowsSplit(70)); // eight warps share each four outputs of so small a matrix: the shared-memory sums run
        CheckMatMul(k, type, n, cols);
    }

    /// <summary>A tile grid too small for the machine splits the inner dimension across groups and adds the stretches
    /// up afterwards (plain and accumulating).</summary>
    [Theory]
    [InlineData(WeightType.BF16, false)]
    [InlineData(WeightType.F32, true)]
    public void ASplitTileMatMulMatchesTheScalarKernel(WeightType type, bool accumulate)
    {
        var k = CudaShaped.Value;
        Assert.True(k.Tile64Split(70, 40, 256) > 1, "one 64 x 64 tile on a 256-column matrix is split");
        CheckMatMul(k, type, 40, 256, accumulate: accumulate);
    }

    private static readonly Lazy<GpuKernels> CudaShaped = new(() => new GpuKernels(GpuAccelerator.Cpu(threadsPerWarp: 32, warpsPerGroup: 8)));

    private void CheckMatMul(GpuKernels k, WeightType type, int n, int cols, int inputOffset = 0, bool accumulate = false)
    {
        const int rows = 70;
        using var w = WeightMatrix.FromFloats(Random(rows * cols, 1), rows, cols, type);
        var x = Random(n * cols, 2);
        var expected = new float[n * rows];
        new CpuKernels(SimdLevel.Scalar).MatMul(expected, x, w, n);
        var before = accumulate ? Random(n * rows, 5) : new float[n * rows];
        for (int i = 0; i < expected.Length; i++) expected[i] += before[i];
        var a = k.Device.Accelerator;
        using var dw = new DeviceMatrix(a, w);
        using var yb = a.Allocate1D(before);
        using var xb = a.Allocate1D<float>(inputOffset + x.Length);
        var xv = xb.View.SubView(inputOffset, x.Length);
        xv.CopyFromCPU(x);
        k.MatMul(yb.View, xv, dw, n, accumulate);
        var got = new float[n * rows];
        yb.View.CopyToCPU(got);
        Compare.Close(log, $"matmul {type} n={n} cols={cols} offset={inputOffset}{(accumulate ? " accumulate" : "")} ({k.MatMulKernel(n)})", got, expected, Tolerance);
    }

    [Fact]
    public void RmsNormAndSiluMulMatchTheScalarTwins()
    {
        const int n = 3, dim = 40;
        var x = Random(n * dim, 3, 4f);
        var weight = Random(dim, 4);
        var expected = new float[n * dim];
        for (int t = 0; t < n; t++) NaiveOps.RmsNorm(expected.AsSpan(t * dim, dim), x.AsSpan(t * dim, dim), weight, 1e-5f);
        var y = Up(new float[n * dim]);
        _k.RmsNorm(y, Up(x), Up(weight), dim, 1e-5f, n);
        Compare.Close(log, "rmsnorm", Down(y, n * dim), expected, Tolerance);

        var gate = Random(n * dim, 5, 6f);
        var up = Random(n * dim, 6);
        var silu = new float[n * dim];
        NaiveOps.SiluMul(silu, gate, up);
        var dy = Up(new float[n * dim]);
        _k.SiluMul(dy, Up(gate), Up(up), n * dim);
        Compare.Close(log, "silu·mul", Down(dy, n * dim), silu, Tolerance);

    }

    /// <summary>One launch rotates the queries in place and writes the rotated keys and the values into their pages at each
    /// token's position (llama3 scaling; positions out of order, one sequence crossing pages).</summary>
    [Fact]
    public void RopeWithLlama3ScalingAndTheKvWriteMatchTheHost()
    {
        var c = ModelConfig.Load(Golden.PathOf("llama3_scaled_bf16"));
        Assert.NotNull(c.RopeScaling);
        int[] positions = [0, 5, 63, 17];
        int n = positions.Length, half = c.HeadDim / 2, kvDim = c.KvDim, layers = 2, layer = 1, pageFloats = 4 * kvDim;
        var table = new RopeTable(c, 64);
        var cos = new float[64 * half];
        var sin = new float[64 * half];
        for (int p = 0; p < 64; p++) { table.Cos(p).CopyTo(cos.AsSpan(p * half)); table.Sin(p).CopyTo(sin.AsSpan(p * half)); }
        var q = Random(n * c.QDim, 8);
        var k = Random(n * kvDim, 9);
        var v = Random(n * kvDim, 10);
        var eq = (float[])q.Clone();
        var ek = (float[])k.Clone();
        for (int t = 0; t < n; t++)
        {
            Ops.Rope(eq.AsSpan(t * c.QDim, c.QDim), c.NumHeads, c.HeadDim, table.Cos(positions[t]), table.Sin(positions[t]));
            Ops.Rope(ek.AsSpan(t * kvDim, kvDim), c.NumKvHeads, c.HeadDim, table.Cos(positions[t]), table.Sin(positions[t]));
        }
        using var pool = new PagePool(256L * pageFloats * 4, pageFloats);
        using var cache = new PagedKvCache(pool, 1, layers, kvDim, 64);
        cache.Reserve(64);
        using var mirror = new DevicePoolMirror(A, pool);
        mirror.Sync(cache.PageTable);
        var shape = new PagedKvShape(layer, layers, cache.BlockSize, kvDim, pageFloats);
        var dq = Up(q);
        _k.RopeWriteKv(dq, Up(k), Up(v), mirror.Pages, Up(cache.PageTable.ToArray()), Up(new int[n]), Up(positions), Up(cos), Up(sin), n,
            shape, new RopeShape(c.NumHeads, c.NumKvHeads, c.HeadDim));
        Compare.Close(log, "rope q", Down(dq, q.Length), eq, Tolerance);
        var pages = Down(mirror.Pages, pool.PageCount * pageFloats);
        for (int t = 0; t < n; t++)
        {
            int pos = positions[t], row = pos % cache.BlockSize;
            int kPage = cache.PageTable[(pos / cache.BlockSize * layers + layer) * 2], vPage = cache.PageTable[(pos / cache.BlockSize * layers + layer) * 2 + 1];
            Compare.Close(log, $"rotated keys at {pos}", pages.AsSpan(kPage * pageFloats + row * kvDim, kvDim), ek.AsSpan(t * kvDim, kvDim), Tolerance);
            Compare.Close(log, $"values at {pos}", pages.AsSpan(vPage * pageFloats + row * kvDim, kvDim), v.AsSpan(t * kvDim, kvDim), 0);
        }
    }

    [Theory]
    [InlineData(WeightType.F32)]
    [InlineData(WeightType.BF16)]
    public void EmbeddingGatherAndArgmaxMatchTheHost(WeightType type)
    {
        const int vocab = 50, dim = 24;
        using var e = WeightMatrix.FromFloats(Random(vocab * dim, 10), vocab, dim, type);
        int[] tokens = [3, 49, 0, 3];
        var expected = new float[tokens.Length * dim];
        for (int t = 0; t < tokens.Length; t++) e.ReadRow(tokens[t], expected.AsSpan(t * dim, dim));
        using var de = new DeviceMatrix(A, e);
        var x = Up(new float[tokens.Length * dim]);
        _k.Embed(x, de, Up(tokens), tokens.Length);
        Compare.Close(log, $"embedding {type}", Down(x, expected.Length), expected, 0);

        var rows = Up(new float[2 * dim]);
        _k.GatherRows(rows, x, Up(new[] { 1, 2 }), dim, 2);
        Compare.Close(log, "gather", Down(rows, 2 * dim), expected.AsSpan(dim, 2 * dim), 0);

        // argmax per row, lowest index on ties
        var logits = Random(3 * 300, 11);
        logits[300 + 7] = logits[300 + 250] = 9f;
        logits[2 * 300 + 299] = 5f;
        var ids = Up(new int[3]);
        _k.Argmax(ids, Up(logits), 300, 3);
        var got = Down(ids, 3);
        for (int r = 0; r < 3; r++) Assert.Equal(NaiveOps.Argmax(logits.AsSpan(r * 300, 300)), got[r]);
        Assert.Equal(7, got[1]);
    }

    /// <summary>Paged GQA attention for a decode token (37 positions, crossing many pages) and a prefill run of five tokens
    /// of another sequence (causal), reading a device mirror of the pool through the page tables; and the write of new keys
    /// and values into their pages.</summary>
    [Fact]
    public void PagedAttentionAndKvWriteMatchTheCpuKernel()
    {
        const int heads = 4, kvHeads = 2, hd = 16, layers = 2, layer = 1, kvDim = kvHeads * hd, pageFloats = 64;
        using var pool = new PagePool(256L * pageFloats * 4, pageFloats);
        using var a = new PagedKvCache(pool, 1, layers, kvDim, 64);
        using var b = new PagedKvCache(pool, 2, layers, kvDim, 64);
        a.Reserve(37);
        b.Reserve(14);
        var rng = new System.Random(12);
        foreach (var cache in new[] { a, b })
            for (int l = 0; l < layers; l++)
                for (int blk = 0; blk < cache.Capacity / cache.BlockSize; blk++)
                {
                    foreach (ref float e in cache.Keys(l, blk)) e = (float)(rng.NextDouble() * 2 - 1);
                    foreach (ref float e in cache.Values(l, blk)) e = (float)(rng.NextDouble() * 2 - 1);
                }
        int[] lengths = [37, 10, 11, 12, 13, 14];
        int T = lengths.Length;
        var caches = new IKvCache[] { a, b, b, b, b, b };
        var q = Random(T * heads * hd, 13);
        var cpu = new CpuKernels(SimdLevel.Scalar);
        var expected = new float[T * heads * hd];
        var scratch = new float[cpu.AttentionScratchRows * 64];
        cpu.Attention(new AttentionBatch(expected, q, caches, lengths, T, heads, kvHeads, hd, layer, scratch, 64));

        using var mirror = new DevicePoolMirror(A, pool);
        mirror.Sync(a.PageTable);
        mirror.Sync(b.PageTable);
        var table = a.PageTable.ToArray().Concat(b.PageTable.ToArray()).ToArray();
        int[] offsets = [0, .. Enumerable.Repeat(a.PageTable.Length, 5)];
        var shape = new PagedKvShape(layer, layers, a.BlockSize, kvDim, pageFloats);
        var output = Up(new float[expected.Length]);
        var dTable = Up(table);
        var dOffsets = Up(offsets);
        _k.Attention(output, Up(q), mirror.Pages, dTable, dOffsets, Up(lengths), T, shape, new AttentionShape(heads, kvHeads, hd, 1f / MathF.Sqrt(hd)));
        Compare.Close(log, "paged attention", Down(output, expected.Length), expected, Tolerance);

        // new keys/values of tokens at positions 36 (a) and 13 (b) land in their pages' rows (RoPE tables of the identity
        // rotation, so the keys land as they are)
        var k = Random(2 * kvDim, 14);
        var v = Random(2 * kvDim, 15);
        var ones = Enumerable.Repeat(1f, 64 * hd / 2).ToArray();
        _k.RopeWriteKv(Up(new float[2 * heads * hd]), Up(k), Up(v), mirror.Pages, dTable, Up(new[] { 0, a.PageTable.Length }), Up(new[] { 36, 13 }),
            Up(ones), Up(new float[ones.Length]), 2, shape, new RopeShape(heads, kvHeads, hd));
        var pages = Down(mirror.Pages, pool.PageCount * pageFloats);
        void Check(PagedKvCache cache, int pos, int t)
        {
            int page = cache.PageTable[(pos / cache.BlockSize * layers + layer) * 2], row = pos % cache.BlockSize;
            Compare.Close(log, "written keys", pages.AsSpan(page * pageFloats + row * kvDim, kvDim), k.AsSpan(t * kvDim, kvDim), 0);
            int vpage = cache.PageTable[(pos / cache.BlockSize * layers + layer) * 2 + 1];
            Compare.Close(log, "written values", pages.AsSpan(vpage * pageFloats + row * kvDim, kvDim), v.AsSpan(t * kvDim, kvDim), 0);
        }
        Check(a, 36, 0);
        Check(b, 13, 1);
    }

    /// <summary>Heterogeneous LoRA: a segment of rank 2, a base-model segment, a segment of rank 8, and an adapter that does
    /// not target the module, gathered from pool pages on the device, against the scalar twin.</summary>
    [Theory]
    [InlineData(LoraTarget.UpProj)]   // out 160: Bᵀ rows span three pages
    [InlineData(LoraTarget.DownProj)] // in 160: A rows span three pages
    public void LoraShrinkExpandMatchesTheScalarTwin(LoraTarget target)
    {
        var c = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var t1 = TempAdapter.Random(c, 2, [LoraTarget.UpProj, LoraTarget.DownProj], seed: 1, alpha: 4);
        using var t2 = TempAdapter.Random(c, 8, [.. LoraTargets.All], seed: 2, alpha: 8);
        using var t3 = TempAdapter.Random(c, 4, [LoraTarget.VProj], seed: 3, alpha: 8);
        using var pool = new PagePool(4096L * c.HiddenSize * 4, c.HiddenSize);
        var r1 = AdapterResidency.TryCreate(pool, "a", 1, PeftAdapter.Load(t1.Path, c))!;
        var r2 = AdapterResidency.TryCreate(pool, "b", 2, PeftAdapter.Load(t2.Path, c))!;
        var r3 = AdapterResidency.TryCreate(pool, "c", 3, PeftAdapter.Load(t3.Path, c))!;
        var (inDim, outDim) = LoraTargets.Dims(c, target);
        const int layer = 1, T = 9;
        LoraSegment[] segments = [new(0, 3, r1), new(3, 2, null), new(5, 3, r2), new(8, 1, r3)];
        var x = Random(T * inDim, 16);
        var y0 = Random(T * outDim, 17);
        var expected = (float[])y0.Clone();
        NaiveLora.Apply(expected, x, inDim, outDim, segments, layer, target);

        using var mirror = new DevicePoolMirror(A, pool);
        using var tables = new DeviceAdapterTables(A, c.NumLayers, pool.PageCount);
        AdapterResidency?[] batch = [r1, null, r2, r3];
        tables.Prepare(batch);
        var slots = new int[T];
        foreach (var s in segments)
            slots.AsSpan(s.Start, s.Count).Fill(s.Adapter is { } r ? tables.SlotOf(r, mirror) : -1);
        var shape = new LoraShape(inDim, outDim, 8, layer, (int)target, c.NumLayers, LoraTargets.Count, pool.PageFloats);
        var y = Up(y0);
        var scratch = Up(new float[T * 8]);
        var dSlots = Up(slots);
        var dx = Up(x);
        _k.LoraShrink(scratch, dx, mirror.Pages, tables.Arena, tables.Modules, dSlots, T, shape);
        _k.LoraExpand(y, scratch, mirror.Pages, tables.Arena, tables.Modules, tables.Scales, dSlots, T, shape);
        var got = Down(y, T * outDim);
        Compare.Close(log, $"lora {LoraTargets.Name(target)}", got, expected, Tolerance);
        // the adapters matter, and the rows without an adapter at this module are untouched
        Assert.True(Compare.RelativeError(got, y0).Rel > 1e-3);
        Compare.Close(log, "base rows", got.AsSpan(3 * outDim, 2 * outDim), y0.AsSpan(3 * outDim, 2 * outDim), 0);
        Compare.Close(log, "untargeted rows", got.AsSpan(8 * outDim, outDim), y0.AsSpan(8 * outDim, outDim), 0);
    }
}
