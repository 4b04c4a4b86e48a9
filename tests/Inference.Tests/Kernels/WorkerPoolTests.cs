using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Kernels;

public sealed class WorkerPoolTests
{
    private sealed class CountingJob(int size) : PoolJob
    {
        public readonly int[] Runs = new int[size];
        public readonly HashSet<int> Threads = [];
        public int ThrowAt = -1;

        public override void Execute(int chunk)
        {
            Interlocked.Increment(ref Runs[chunk]);
            lock (Threads) Threads.Add(Environment.CurrentManagedThreadId);
            if (chunk == ThrowAt) throw new InvalidOperationException("chunk failed");
            Thread.SpinWait(200);   // long enough that the workers get a share
        }
    }

    /// <summary>Thousands of regions of varying size back to back: every chunk of every region runs exactly once,
    /// and none of a later region runs early (a late worker must not claim from a region it did not see start).</summary>
    [Fact]
    public void EveryChunkRunsExactlyOncePerRegion()
    {
        using var pool = new WorkerPool(4);
        var rng = new Random(1);
        var threads = new HashSet<int>();
        for (int region = 0; region < 3000; region++)
        {
            int chunks = rng.Next(1, 40);
            var job = new CountingJob(chunks);
            pool.Run(job, chunks);
            Assert.All(job.Runs, n => Assert.Equal(1, n));
            threads.UnionWith(job.Threads);
        }
        Assert.True(threads.Count > 1, "the regions all ran on one thread");
    }

    /// <summary>A region started while another runs (another thread, or a chunk that starts one) runs on its caller.</summary>
    [Fact]
    public async Task ConcurrentAndNestedRegionsStillRunEveryChunkOnce()
    {
        using var pool = new WorkerPool(3);
        var outer = new NestingJob(pool, 16);
        var others = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < 200; i++)
            {
                var job = new CountingJob(12);
                pool.Run(job, 12);
                Assert.All(job.Runs, n => Assert.Equal(1, n));
            }
        })).ToArray();
        for (int i = 0; i < 50; i++) pool.Run(outer, 16);
        await Task.WhenAll(others);
        Assert.All(outer.Inner, job => Assert.All(job.Runs, n => Assert.Equal(50, n)));
    }

    private sealed class NestingJob(WorkerPool pool, int size) : PoolJob
    {
        public readonly CountingJob[] Inner = Enumerable.Range(0, size).Select(_ => new CountingJob(5)).ToArray();
        public override void Execute(int chunk) => pool.Run(Inner[chunk], 5);
    }

    [Fact]
    public void AChunksExceptionReachesTheCallerAfterTheRegionEnds()
    {
        using var pool = new WorkerPool(2);
        var job = new CountingJob(20) { ThrowAt = 7 };
        var e = Assert.Throws<AggregateException>(() => pool.Run(job, 20));
        Assert.IsType<InvalidOperationException>(e.InnerException);
        Assert.All(job.Runs, n => Assert.Equal(1, n));
        var next = new CountingJob(10);
        pool.Run(next, 10);
        Assert.All(next.Runs, n => Assert.Equal(1, n));
    }

    /// <summary>Who computes which chunk does not change a bit: a forward pass (prefill, decode at batch 1 and 8) on one
    /// worker and on four gives bitwise the same logits.</summary>
    [Theory]
    [InlineData(WeightType.F32)]
    [InlineData(WeightType.BF16)]
    public void LogitsDoNotDependOnTheNumberOfWorkers(WeightType type)
    {
        var config = new ModelConfig
        {
            ModelType = "llama", HiddenSize = 576, IntermediateSize = 1536, NumLayers = 2, NumHeads = 9, NumKvHeads = 3,
            HeadDim = 64, VocabSize = 4096, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 100000, MaxPositionEmbeddings = 2048,
        };
        float[] Run(int workers)
        {
            using var model = new Transformer(ModelWeights.CreateRandom(config, type, seed: 9), new CpuKernels(Simd.Best, workers), maxContext: 128);
            var rng = new Random(4);
            var caches = Enumerable.Range(0, 8).Select(_ => model.CreateCache(128)).ToArray();
            var state = model.CreateState(40, 8);
            var logits = new List<float>();
            foreach (var cache in caches)
            {
                state.Clear();
                state.Add(cache, Enumerable.Range(0, 40).Select(_ => rng.Next(config.VocabSize)).ToArray());
                model.Forward(state);
                logits.AddRange(state.Logits(0).ToArray());
            }
            foreach (int b in new[] { 1, 8, 8 })
            {
                state.Clear();
                for (int i = 0; i < b; i++) state.Add(caches[i], [rng.Next(config.VocabSize)]);
                model.Forward(state);
                for (int i = 0; i < b; i++) logits.AddRange(state.Logits(i).ToArray());
            }
            return [.. logits];
        }
        var one = Run(1);
        var four = Run(4);
        Assert.Equal(one.Length, four.Length);
        for (int i = 0; i < one.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(one[i]) == BitConverter.SingleToInt32Bits(four[i]), $"logit {i}: {one[i]} on one worker, {four[i]} on four");
    }
}
