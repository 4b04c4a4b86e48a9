using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Lora;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Model;

/// <summary>Runs alone (no other test allocates beside it), since it counts the bytes every thread allocates.</summary>
[CollectionDefinition(nameof(AllocationCounting), DisableParallelization = true)]
public sealed class AllocationCounting;

/// <summary>A steady-state decode step allocates no managed memory: no closures, no per-call arrays, no thread-pool
/// tasks, on the calling thread or the kernels' workers. Counted on exactly those threads: the calling thread's own
/// count (a closure, an array, a Parallel.For or a task started by the forward pass lands there) and the pool workers'
/// counts (<see cref="WorkerPool.WorkerAllocatedBytes"/>), one window per step. The process-wide count is logged but
/// not asserted: the test host's other threads allocate a few hundred bytes now and then (168 bytes at a time; on a
/// loaded machine, in every window). A thread's first block on a monitor allocates once (about 2-3 KB; on a loaded
/// machine the calling thread first waits for a descheduled worker at any step), so up to two windows may allocate:
/// a forward pass that allocates on every step makes every window non-zero.</summary>
[Collection(nameof(AllocationCounting))]
public sealed class ForwardAllocationTests(ITestOutputHelper log) : IDisposable
{
    /// <summary>SmolLM2-135M's widths (so every matmul, the attention and the LoRA kernels take their parallel paths),
    /// two layers and a small vocabulary.</summary>
    private static readonly ModelConfig Shape = new()
    {
        ModelType = "llama", HiddenSize = 576, IntermediateSize = 1536, NumLayers = 2, NumHeads = 9, NumKvHeads = 3,
        HeadDim = 64, VocabSize = 8192, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 100000, MaxPositionEmbeddings = 2048,
    };

    private const int Windows = 16, StepsPerWindow = 1, OneTimeWindows = 2;
    private readonly List<TempAdapter> _temps = [];

    public void Dispose() { foreach (var t in _temps) t.Dispose(); }

    [Theory]
    [InlineData(1, WeightType.BF16)]
    [InlineData(8, WeightType.BF16)]
    [InlineData(8, WeightType.F32)]
    [InlineData(1, WeightType.Q8)]
    [InlineData(8, WeightType.Q8)]
    public void DecodeStepAllocatesNothing(int batch, WeightType type)
    {
        using var model = new Transformer(ModelWeights.CreateRandom(Shape, type, seed: 3), new CpuKernels(), maxContext: 256);
        using var pool = new PagePool(16L << 20, Shape.HiddenSize);
        var caches = Enumerable.Range(0, batch).Select(i => (IKvCache)PagedKvCache.For(pool, Shape, i, 256)).ToArray();
        var state = model.CreateState(Math.Max(batch, 32), batch);
        AssertNoAllocation(model, state, caches, new AdapterResidency?[batch], $"batch {batch} {type}");
        foreach (var c in caches) ((IDisposable)c).Dispose();
    }

    /// <summary>Batch 8 with four adapters of rank 32 on every module (two sequences each): the LoRA kernels run their
    /// pieces across segments on the workers.</summary>
    [Fact]
    public void DecodeStepWithAdaptersAllocatesNothing()
    {
        const int batch = 8;
        using var model = new Transformer(ModelWeights.CreateRandom(Shape, WeightType.BF16, seed: 3), new CpuKernels(), maxContext: 256);
        using var pool = new PagePool(64L << 20, Shape.HiddenSize);
        var adapters = Enumerable.Range(0, 4).Select(i =>
        {
            var t = TempAdapter.Random(Shape, 32, [.. LoraTargets.All], seed: 20 + i, alpha: 8);
            _temps.Add(t);
            return AdapterResidency.TryCreate(pool, $"a{i}", i + 1, PeftAdapter.Load(t.Path, Shape))!;
        }).ToArray();
        var caches = Enumerable.Range(0, batch).Select(i => (IKvCache)PagedKvCache.For(pool, Shape, i, 256)).ToArray();
        var state = model.CreateState(32, batch, maxLoraRank: 32);
        AssertNoAllocation(model, state, caches, Enumerable.Range(0, batch).Select(i => (AdapterResidency?)adapters[i / 2]).ToArray(), "batch 8, four adapters");
        foreach (var c in caches) ((IDisposable)c).Dispose();
    }

    private void AssertNoAllocation(Transformer model, ForwardState state, IKvCache[] caches, AdapterResidency?[] adapters, string what)
    {
        int batch = caches.Length;
        var rng = new Random(5);
        var prompt = new int[24];
        for (int i = 0; i < batch; i++)
        {
            for (int j = 0; j < prompt.Length; j++) prompt[j] = rng.Next(Shape.VocabSize);
            state.Clear();
            state.Add(caches[i], prompt, adapters[i]);
            model.Forward(state);
        }
        var next = new int[batch];
        void Step()
        {
            state.Clear();
            for (int i = 0; i < batch; i++) state.Add(caches[i], next.AsSpan(i, 1), adapters[i]);
            model.Forward(state);
            for (int i = 0; i < batch; i++) next[i] = model.Kernels.Argmax(state.Logits(i));
        }
        for (int s = 0; s < 4; s++) Step();   // warm-up: first-use buffers, the JIT's tiers
        for (int s = 0; s < 2; s++) { Thread.Sleep(5); Step(); }   // the workers' blocking wait between steps, once
        var pool = ((CpuKernels)model.Kernels).Pool;
        var windows = new List<string>();
        int allocating = 0;
        for (int w = 0; w < Windows; w++)
        {
            long own0 = GC.GetAllocatedBytesForCurrentThread();
            long workers0 = pool.WorkerAllocatedBytes;
            long all0 = GC.GetTotalAllocatedBytes(precise: true);
            for (int s = 0; s < StepsPerWindow; s++) Step();
            long all = GC.GetTotalAllocatedBytes(precise: true) - all0;
            long own = GC.GetAllocatedBytesForCurrentThread() - own0;
            long workers = pool.WorkerAllocatedBytes - workers0;
            windows.Add($"{own} B on the calling thread, {workers} B on the workers ({all} B in the process)");
            if (own + workers > 0) allocating++;
        }
        log.WriteLine($"{what}: bytes allocated per window of {StepsPerWindow} decode steps: {string.Join("; ", windows)}");
        Assert.True(allocating <= OneTimeWindows, $"{what}: the forward pass's threads allocated in {allocating} of {Windows} windows: {string.Join("; ", windows)}");
    }
}
