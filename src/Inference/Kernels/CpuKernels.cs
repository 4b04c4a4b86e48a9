using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>The CPU backend: System.Numerics.Tensors and Vector256/Vector512, parallel over output rows on the
/// instance's own persistent workers (<see cref="WorkerPool"/>, started with the instance, stopped by Dispose).</summary>
public sealed unsafe partial class CpuKernels(SimdLevel level, int workers) : IKernels, IDisposable
{
    public CpuKernels() : this(Simd.Best) { }
    public CpuKernels(SimdLevel level) : this(level, Environment.ProcessorCount) { }

    public SimdLevel Level { get; } = level;
    /// <summary>The threads every parallel region of this backend runs on.</summary>
    public WorkerPool Pool { get; } = new(workers);
    public int AttentionScratchRows { get; } = Environment.ProcessorCount * 4;

    public void Dispose() => Pool.Dispose();

    public void MatMul(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        if (_rider is not null && RideAlong(y, x, w, n)) return;
        if (Level == SimdLevel.Scalar) MatMulKernel.Naive(y, x, w, n);
        else MatMulKernel.Forward(y, x, w, n, Level, Pool);
    }

    public void MatMul(Span<float> y1, WeightMatrix w1, Span<float> y2, WeightMatrix w2, Span<float> y3, WeightMatrix? w3, ReadOnlySpan<float> x, int n)
    {
        if (_rider is not null && RideAlong(y1, w1, y2, w2, y3, w3, x, n)) return;
        if (Level == SimdLevel.Scalar || x.Length < n * w1.Cols || y1.Length < n * w1.Rows || y2.Length < n * w2.Rows
            || (w3 != null && y3.Length < n * w3.Rows) || w1.Cols != w2.Cols || (w3 != null && w3.Cols != w1.Cols))
        {
            MatMul(y1, x, w1, n);
            MatMul(y2, x, w2, n);
            if (w3 != null) MatMul(y3, x, w3, n);
            return;
        }
        fixed (float* p1 = y1)
        fixed (float* p2 = y2)
        fixed (float* p3 = y3)
        fixed (float* xp = x)
        {
            if (w3 == null) MatMulKernel.Forward([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2)], xp, n, Level, Pool);
            else MatMulKernel.Forward([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2), new MatMulTarget((nint)p3, w3)], xp, n, Level, Pool);
        }
    }

    public void MatMulAdd(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        if (_rider is not null && RideAlong(y, x, w, n, MatMulEpilogue.Add)) return;
        if (Level == SimdLevel.Scalar) MatMulKernel.NaiveAdd(y, x, w, n);
        else MatMulKernel.ForwardAdd(y, x, w, n, Level, Pool);
    }

    public void MatMulSiluMul(Span<float> h, WeightMatrix gate, WeightMatrix up, ReadOnlySpan<float> x, int n)
    {
        if (_rider is not null && RideAlong(h, x, gate, n, MatMulEpilogue.SiluMul, up)) return;
        if (Level == SimdLevel.Scalar) MatMulKernel.NaiveSiluMul(h, x, gate, up, n);
        else MatMulKernel.ForwardSiluMul(h, x, gate, up, n, Level, Pool);
    }

    /// <summary>Rows of a row-wise pass (RMSNorm; RoPE and the KV write) from which the pool shares them out in chunks of
    /// <see cref="RowsPerChunk"/>: a prefill's hundreds of rows. A decode step's few stay on the calling thread, where
    /// a region's start and end would cost more than the pass. Each row's arithmetic is the same either way.</summary>
    public const int ParallelRowsMin = 64;

    private const int RowsPerChunk = 16;

    private bool ShareRows(int n) => n >= ParallelRowsMin && Pool.Workers > 1;

    public void RmsNorm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int n)
    {
        int d = weight.Length;
        if (x.Length < n * d || y.Length < n * d)
            throw new ArgumentException($"RMSNorm of {n} rows of {d} needs {n * d} values in and out");
        if (Level != SimdLevel.Scalar && ShareRows(n))
        {
            fixed (float* yp = y)
            fixed (float* xp = x)
            fixed (float* wp = weight)
            {
                var job = _normJob ??= new NormJob();
                job.Set(yp, xp, wp, d, eps, n);
                Pool.Run(job, (n + RowsPerChunk - 1) / RowsPerChunk);
            }
            return;
        }
        for (int i = 0; i < n; i++)
        {
            if (Level == SimdLevel.Scalar) NaiveOps.RmsNorm(y.Slice(i * d, d), x.Slice(i * d, d), weight, eps);
            else Ops.RmsNorm(y.Slice(i * d, d), x.Slice(i * d, d), weight, eps);
        }
    }

    public void Rope(Span<float> vec, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin) =>
        Ops.Rope(vec, heads, headDim, cos, sin);

    public void RopeAndCache(Span<float> q, Span<float> k, ReadOnlySpan<float> v, int tokens, int heads, int kvHeads, int headDim,
        ReadOnlySpan<int> positions, IKvCache[] caches, int layer, RopeTable rope)
    {
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        if (q.Length < tokens * qDim || k.Length < tokens * kvDim || v.Length < tokens * kvDim || positions.Length < tokens || caches.Length < tokens)
            throw new ArgumentException($"RoPE and cache write of {tokens} tokens: buffers too small");
        fixed (float* qp = q)
        fixed (float* kp = k)
        fixed (float* vp = v)
        fixed (int* pp = positions)
        {
            var job = _ropeJob ??= new RopeJob();
            job.Set(qp, kp, vp, pp, caches, tokens, heads, kvHeads, headDim, layer, rope);
            try
            {
                if (ShareRows(tokens)) Pool.Run(job, (tokens + RowsPerChunk - 1) / RowsPerChunk);
                else job.Rows(0, tokens);
            }
            finally
            {
                job.Release();
            }
        }
    }

    public void SiluMul(Span<float> y, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        if (Level == SimdLevel.Scalar) NaiveOps.SiluMul(y, gate, up);
        else Ops.SiluMul(y, gate, up);
    }

    public int Argmax(ReadOnlySpan<float> x) => Ops.Argmax(x);

    /// <summary>A sequence with at least this many new tokens (a prefill) gets the transposed-keys attention.</summary>
    public const int TransposedAttentionMinTokens = 8;

    public void Attention(in AttentionBatch b)
    {
        int groups = b.Heads / b.KvHeads;
        bool transposed = Level == SimdLevel.Vector512 && b.KeysT.Length > 0;
        // runs of tokens from one sequence: long runs (prefill) share one transposed copy of their keys
        Span<bool> inLongRun = b.Tokens <= 4096 ? stackalloc bool[b.Tokens] : new bool[b.Tokens];
        int shortTokens = b.Tokens;
        if (transposed)
        {
            for (int t = 0; t < b.Tokens;)
            {
                int e = t + 1;
                while (e < b.Tokens && ReferenceEquals(b.Caches[e], b.Caches[t])) e++;
                if (e - t >= TransposedAttentionMinTokens)
                {
                    PrefillRun(b, t, e, groups);
                    inLongRun[t..e].Fill(true);
                    shortTokens -= e - t;
                }
                t = e;
            }
        }
        if (shortTokens > 0) PerToken(b, inLongRun, groups);
    }

    private void PrefillRun(in AttentionBatch b, int t0, int t1, int groups)
    {
        var cache = b.Caches[t0];
        int length = b.Lengths[t1 - 1];
        Kernels.Attention.TransposeKeys(b.KeysT, cache, b.Layer, length, b.KvHeads, b.HeadDim);
        // heads of 64 in groups: an item is one token's group of query heads (each key block and value row read once for
        // the group, Attention.GroupTransposed), with one score row per head
        bool grouped = groups > 1 && b.HeadDim == 64;
        int rowsPerChunk = grouped ? groups : 1;
        int items = (t1 - t0) * (grouped ? b.KvHeads : b.Heads);
        int chunks = ScratchChunks(b, rowsPerChunk, items, AttentionScratchRows);
        // the value rows' addresses, once per KV head for the run's longest length (the tokens' are its prefixes)
        byte** valueRows = null;
        if (grouped)
        {
            valueRows = KvBlocks.RowBuffer(ref _prefillValueRows, b.KvHeads * length);
            for (int g = 0; g < b.KvHeads; g++) KvBlocks.ValueRows(cache, b.Layer, g, 64, length, valueRows + (long)g * length);
        }
        fixed (float* outP = b.Output)
        fixed (float* qP = b.Q)
        fixed (float* sP = b.Scratch)
        fixed (float* ktP = b.KeysT)
        fixed (int* lenP = b.Lengths)
        {
            var job = _prefillJob ??= new PrefillAttentionJob();
            job.Set(b, outP, qP, sP, ktP, lenP, valueRows, length, t0, chunks, items, groups, (length + 15) / 16, grouped);
            try
            {
                Pool.Run(job, chunks);
            }
            finally
            {
                job.Cache = null;
            }
        }
    }

    /// <summary>Consecutive tokens of one sequence computed together by the 256-bit attention (their queries share the
    /// keys and values each block of positions brings into the core's cache).</summary>
    public const int QueryBlockTokens = 4;

    private void PerToken(in AttentionBatch b, ReadOnlySpan<bool> skip, int groups)
    {
        // at 256 bits a KV group's heads go together once the batch has items for every scratch row, and for a small
        // batch over long contexts: one decode token's 3 groups at context 512 (3 items for two cores) finish sooner than
        // its 9 heads one at a time, each group's rows being read once; at context ~100 the 9 items balance better
        if (Level == SimdLevel.Vector256 && b.HeadDim == 64 &&
            (b.Tokens * b.KvHeads >= AttentionScratchRows || groups > 1 && MinLength(b.Lengths[..b.Tokens]) >= GroupedDecodeMinContext))
        {
            QueryBlocks(b, skip, groups);
            return;
        }
        // all heads of a KV group in one item once there are enough groups to keep every scratch row busy; with headDim
        // 64 and Vector512 the group's heads are computed together (each key and value row read once per group), with
        // one score row per head
        bool grouped = groups > 1 && b.Tokens * b.KvHeads >= AttentionScratchRows;
        bool blocked = grouped && Level == SimdLevel.Vector512 && b.HeadDim == 64;
        int rowsPerChunk = blocked ? groups : 1;
        int items = b.Tokens * (grouped ? b.KvHeads : b.Heads);
        int chunks = ScratchChunks(b, rowsPerChunk, items, AttentionScratchRows);
        fixed (float* outP = b.Output)
        fixed (float* qP = b.Q)
        fixed (float* sP = b.Scratch)
        fixed (int* lenP = b.Lengths)
        fixed (bool* skipP = skip)
        {
            var job = _perTokenJob ??= new PerTokenAttentionJob();
            job.Set(b, outP, qP, sP, lenP, skipP, chunks, items, groups, grouped, blocked, Level);
            long work = 0;
            for (int t = 0; t < b.Tokens; t++) if (!skip[t]) work += b.Lengths[t];
            RunChunks(job, chunks, work * b.Heads * b.HeadDim);
        }
    }

    /// <summary>How many chunks an attention job runs: at most <paramref name="cap"/> and <paramref name="items"/>, each with
    /// <paramref name="rowsPerChunk"/> score rows of the batch's scratch.</summary>
    private static int ScratchChunks(in AttentionBatch b, int rowsPerChunk, int items, int cap)
    {
        int chunks = Math.Min(Math.Min(cap, items), b.Scratch.Length / (b.ScratchRowLength * rowsPerChunk));
        if (chunks < 1) throw new ArgumentException("attention scratch too small");
        return chunks;
    }

    /// <summary>Runs a job over the batch's own caches: on the calling thread when it has one chunk or little work
    /// (<paramref name="work"/>: positions × heads × head width), else on the pool; the job lets go of the caches after.</summary>
    private void RunChunks(BatchCachesJob job, int chunks, long work)
    {
        try
        {
            if (chunks == 1 || work < 1 << 15)
                for (int c = 0; c < chunks; c++) job.Execute(c);
            else
                Pool.Run(job, chunks);
        }
        finally
        {
            job.Caches = null;
        }
    }

    /// <summary>Context from which a small batch's 256-bit attention computes each KV group's heads together.</summary>
    public const int GroupedDecodeMinContext = 256;

    private static int MinLength(ReadOnlySpan<int> lengths)
    {
        int m = int.MaxValue;
        foreach (int l in lengths) m = Math.Min(m, l);
        return m;
    }

    /// <summary>The 256-bit attention over blocks of up to <see cref="QueryBlockTokens"/> consecutive tokens of one
    /// sequence (<see cref="QueryBlockAttentionJob"/>); tokens marked in skip were done by a prefill run.</summary>
    private void QueryBlocks(in AttentionBatch b, ReadOnlySpan<bool> skip, int groups)
    {
        // block k: tokens [bounds[2k], bounds[2k + 1])
        Span<int> bounds = b.Tokens <= 1024 ? stackalloc int[2 * b.Tokens] : new int[2 * b.Tokens];
        int blocks = 0, widest = 1;
        long work = 0;
        for (int t = 0; t < b.Tokens;)
        {
            if (skip[t]) { t++; continue; }
            int e = t + 1;
            while (e < b.Tokens && e - t < QueryBlockTokens && !skip[e] && ReferenceEquals(b.Caches[e], b.Caches[t])) e++;
            (bounds[2 * blocks], bounds[2 * blocks + 1]) = (t, e);
            blocks++;
            widest = Math.Max(widest, e - t);
            for (int u = t; u < e; u++) work += b.Lengths[u];
            t = e;
        }
        if (blocks == 0) return;
        int rowsPerChunk = widest * groups;   // a decode batch's blocks are single tokens: more chunks over the same rows
        int items = blocks * b.KvHeads;
        int chunks = ScratchChunks(b, rowsPerChunk, items, int.MaxValue);
        fixed (float* outP = b.Output)
        fixed (float* qP = b.Q)
        fixed (float* sP = b.Scratch)
        fixed (int* lenP = b.Lengths)
        fixed (int* boundP = bounds)
        {
            var job = _queryBlockJob ??= new QueryBlockAttentionJob();
            job.Set(b, outP, qP, sP, lenP, boundP, blocks, chunks, groups, rowsPerChunk);
            RunChunks(job, chunks, work * b.Heads * b.HeadDim);
        }
    }

    [ThreadStatic] private static QueryBlockAttentionJob? _queryBlockJob;
    [ThreadStatic] private static PrefillAttentionJob? _prefillJob;
    [ThreadStatic] private static nint[]? _prefillValueRows;
    [ThreadStatic] private static PerTokenAttentionJob? _perTokenJob;
}
