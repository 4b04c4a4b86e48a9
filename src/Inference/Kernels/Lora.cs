using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Loom.Inference.Formats;
using Loom.Inference.Memory;

namespace Loom.Inference.Kernels;

/// <summary>A run of consecutive batch tokens [Start, Start + Count) that share one adapter (null: base model only).</summary>
public readonly record struct LoraSegment(int Start, int Count, AdapterResidency? Adapter);

/// <summary>Heterogeneous LoRA over a batch (SGMV-style): per segment of tokens with the same adapter,
/// y += scale · (x Aᵀ) Bᵀ in PEFT's layout (A: (r, in), B: (out, r)), with A and Bᵀ rows gathered from pool
/// pages, in float32 or bfloat16 (<see cref="AdapterPageFormat"/>; bf16 widened exactly as loaded). Mixed ranks in one batch; segments without an adapter, or whose adapter does not target the module, are
/// skipped. Adapters are never merged into the base weights. Free functions, output first; scalar twin in <see cref="NaiveLora"/>.</summary>
public static unsafe class LoraKernel
{
    /// <summary>Adds the LoRA delta of every segment to y for one module of one layer.
    /// y: (n, outDim) the base projection's output; x: (n, inDim) its input;
    /// scratch: at least (n, max rank in the batch) floats for the shrunk activations.</summary>
    /// <param name="pool">The workers (null: the shared pool).</param>
    public static void Apply(Span<float> y, ReadOnlySpan<float> x, int inDim, int outDim, ReadOnlySpan<LoraSegment> segments,
        int layer, LoraTarget target, Span<float> scratch, SimdLevel level, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        if (TryApplyAcrossSegments(y, x, inDim, outDim, segments, layer, target, scratch, level, pool)) return;
        foreach (var seg in segments)
        {
            if (seg.Count == 0 || seg.Adapter is not { } ad || !ad.Targets(layer, target)) continue;
            var a = ad.A(layer, target);
            var bt = ad.BT(layer, target);
            CheckShapes(a, bt, inDim, outDim);
            int r = a.Rows;
            if (scratch.Length < seg.Count * r) throw new ArgumentException($"LoRA scratch holds {scratch.Length} floats, needs {seg.Count * r}");
            if ((seg.Start + seg.Count) * inDim > x.Length || (seg.Start + seg.Count) * outDim > y.Length)
                throw new ArgumentException("segment runs past the batch buffers");
            fixed (float* yp = y)
            fixed (float* xp = x)
            fixed (float* sp = scratch)
                Segment(yp + (long)seg.Start * outDim, xp + (long)seg.Start * inDim, sp, seg.Count, a, bt, ad.Scale, level, pool);
        }
    }


    /// <summary>Many small segments (decodes of different adapters) would each run on one core: run pieces of all
    /// segments side by side instead (a long segment is cut into runs of tokens so the cores stay even), each token with
    /// its own scratch row (token t of the batch uses scratch row t). Per token the arithmetic is unchanged. False
    /// (nothing done) when the batch has fewer than two segments with work, is too small, or the scratch lacks room.</summary>
    private static bool TryApplyAcrossSegments(Span<float> y, ReadOnlySpan<float> x, int inDim, int outDim, ReadOnlySpan<LoraSegment> segments,
        int layer, LoraTarget target, Span<float> scratch, SimdLevel level, WorkerPool pool)
    {
        int workers = pool.Workers;
        if (workers == 1 || segments.Length < 2) return false;
        int active = 0, maxRank = 0, end = 0, tokens = 0;
        long work = 0;
        foreach (var seg in segments)
        {
            if (seg.Count == 0 || seg.Adapter is not { } ad || !ad.Targets(layer, target)) continue;
            var a = ad.A(layer, target);
            CheckShapes(a, ad.BT(layer, target), inDim, outDim);
            active++;
            maxRank = Math.Max(maxRank, a.Rows);
            end = Math.Max(end, seg.Start + seg.Count);
            tokens += seg.Count;
            work += (long)seg.Count * a.Rows * (inDim + outDim);
        }
        if (active < 2 || work < 1 << 18 || (long)end * maxRank > scratch.Length || end * inDim > x.Length || end * outDim > y.Length) return false;
        int piece = Math.Max(4, (tokens + workers * 4 - 1) / (workers * 4) + 3 & ~3);
        int count = 0;
        foreach (var seg in segments)
            if (seg.Count > 0 && seg.Adapter is { } ad && ad.Targets(layer, target)) count += (seg.Count + piece - 1) / piece;
        var job = _piecesJob ??= new PiecesJob();
        var items = job.Items(count);
        count = 0;
        foreach (var seg in segments)
        {
            if (seg.Count == 0 || seg.Adapter is not { } ad || !ad.Targets(layer, target)) continue;
            for (int t = 0; t < seg.Count; t += piece) items[count++] = (seg, t, Math.Min(seg.Count, t + piece));
        }
        fixed (float* yp = y)
        fixed (float* xp = x)
        fixed (float* sp = scratch)
        {
            job.Set(yp, xp, sp, inDim, outDim, maxRank, layer, target, level);
            try
            {
                pool.Run(job, count);
            }
            finally
            {
                Array.Clear(items, 0, count);   // drops the adapters
            }
        }
        return true;
    }

    [ThreadStatic] private static PiecesJob? _piecesJob;
    [ThreadStatic] private static SegmentJob? _segmentJob;

    /// <summary>Pieces of many segments side by side (see <see cref="TryApplyAcrossSegments"/>); one per calling thread, reused.</summary>
    private sealed class PiecesJob : PoolJob
    {
        private (LoraSegment Segment, int T0, int T1)[] _items = new (LoraSegment, int, int)[64];
        private float* _y, _x, _s;
        private int _inDim, _outDim, _maxRank, _layer;
        private LoraTarget _target;
        private SimdLevel _level;

        public (LoraSegment Segment, int T0, int T1)[] Items(int count) =>
            _items.Length >= count ? _items : _items = new (LoraSegment, int, int)[count];

        public void Set(float* y, float* x, float* s, int inDim, int outDim, int maxRank, int layer, LoraTarget target, SimdLevel level)
        {
            _y = y; _x = x; _s = s;
            (_inDim, _outDim, _maxRank, _layer, _target, _level) = (inDim, outDim, maxRank, layer, target, level);
        }

        public override void Execute(int i)
        {
            var (seg, t0, t1) = _items[i];
            var ad = seg.Adapter!;
            Rows(_y + (long)seg.Start * _outDim, _x + (long)seg.Start * _inDim, _s + (long)seg.Start * _maxRank,
                t0, t1, ad.A(_layer, _target), ad.BT(_layer, _target), ad.Scale, _level);
        }
    }

    /// <summary>One segment's tokens cut into one contiguous run per worker; one per calling thread, reused.</summary>
    private sealed class SegmentJob : PoolJob
    {
        public PagedMatrix A, BT;
        private float* _y, _x, _s;
        private int _n, _parts;
        private float _scale;
        private SimdLevel _level;

        public void Set(float* y, float* x, float* s, int n, int parts, float scale, SimdLevel level)
        {
            _y = y; _x = x; _s = s;
            (_n, _parts, _scale, _level) = (n, parts, scale, level);
        }

        public override void Execute(int w) => Rows(_y, _x, _s, _n * w / _parts, _n * (w + 1) / _parts, A, BT, _scale, _level);
    }

    private static void CheckShapes(in PagedMatrix a, in PagedMatrix bt, int inDim, int outDim)
    {
        if (a.Cols != inDim || bt.Cols != outDim)
            throw new ArgumentException($"LoRA module is ({a.Cols} -> {bt.Cols}), the projection is ({inDim} -> {outDim})");
    }

    private static void Segment(float* y, float* x, float* s, int n, PagedMatrix a, PagedMatrix bt, float scale, SimdLevel level, WorkerPool pool)
    {
        long work = (long)n * a.Rows * (a.Cols + bt.Cols);
        int workers = Math.Min(n, pool.Workers);
        if (work < 1 << 20 || workers == 1)
        {
            Rows(y, x, s, 0, n, a, bt, scale, level);
            return;
        }
        var job = _segmentJob ??= new SegmentJob();
        job.A = a;
        job.BT = bt;
        job.Set(y, x, s, n, workers, scale, level);
        try
        {
            pool.Run(job, workers);
        }
        finally
        {
            job.A = job.BT = default;
        }
    }

    /// <summary>Tokens [t0, t1): four at a time, so each A and Bᵀ chunk loaded from a page feeds four tokens.
    /// Per token the arithmetic is the same as one at a time, so grouping (batch composition) changes no bit.</summary>
    private static void Rows(float* y, float* x, float* s, int t0, int t1, in PagedMatrix a, in PagedMatrix bt, float scale, SimdLevel level)
    {
        if (a.Format == AdapterPageFormat.Bf16) Rows<Bf16Kv>(y, x, s, t0, t1, a, bt, scale, level);
        else Rows<F32Kv>(y, x, s, t0, t1, a, bt, scale, level);
    }

    /// <summary><see cref="Rows"/> with A and Bᵀ read as <typeparamref name="T"/> (widened exactly as loaded).</summary>
    private static void Rows<T>(float* y, float* x, float* s, int t0, int t1, in PagedMatrix a, in PagedMatrix bt, float scale, SimdLevel level)
        where T : struct, IKvElements
    {
        int r = a.Rows, inDim = a.Cols, outDim = bt.Cols;
        int t = t0;
        for (; t + 4 <= t1; t += 4)
        {
            ShrinkRow4<T>(s + (long)t * r, x + (long)t * inDim, a, level);
            ExpandRow4<T>(y + (long)t * outDim, s + (long)t * r, bt, scale, level);
        }
        for (; t < t1; t++)
        {
            ShrinkRow<T>(s + (long)t * r, x + (long)t * inDim, a, level);
            ExpandRow<T>(y + (long)t * outDim, s + (long)t * r, bt, scale, level);
        }
    }

    /// <summary><see cref="ShrinkRow{T}"/> for four consecutive tokens.</summary>
    private static void ShrinkRow4<T>(float* s, float* x, in PagedMatrix a, SimdLevel level) where T : struct, IKvElements
    {
        int ce = a.ChunkElements, r = a.Rows, inDim = a.Cols;
        for (int i = 0; i < r; i++)
        {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int c = 0; c < a.Chunks; c++)
            {
                byte* ac = a.Chunk(i, c);
                float* xc = x + c * ce;
                Dot4<T>(ac, xc, xc + inDim, xc + 2 * inDim, xc + 3 * inDim, a.ChunkLength(c), level,
                    out float d0, out float d1, out float d2, out float d3);
                s0 += d0; s1 += d1; s2 += d2; s3 += d3;
            }
            s[i] = s0; s[r + i] = s1; s[2 * r + i] = s2; s[3 * r + i] = s3;
        }
    }

    /// <summary><see cref="ExpandRow{T}"/> for four consecutive tokens.</summary>
    private static void ExpandRow4<T>(float* y, float* s, in PagedMatrix bt, float scale, SimdLevel level) where T : struct, IKvElements
    {
        int ce = bt.ChunkElements, r = bt.Rows, outDim = bt.Cols;
        for (int i = 0; i < r; i++)
        {
            float c0 = scale * s[i], c1 = scale * s[r + i], c2 = scale * s[2 * r + i], c3 = scale * s[3 * r + i];
            for (int c = 0; c < bt.Chunks; c++)
            {
                float* yc = y + c * ce;
                Axpy4<T>(yc, yc + outDim, yc + 2 * outDim, yc + 3 * outDim, bt.Chunk(i, c), c0, c1, c2, c3, bt.ChunkLength(c), level);
            }
        }
    }

    /// <summary>s (n, r) = x (n, a.Cols) · Aᵀ, A's rows read from pages.</summary>
    public static void Shrink(Span<float> s, ReadOnlySpan<float> x, int n, in PagedMatrix a, SimdLevel level)
    {
        if (s.Length < n * a.Rows || x.Length < n * a.Cols) throw new ArgumentException("shrink buffers too small");
        fixed (float* sp = s)
        fixed (float* xp = x)
            if (a.Format == AdapterPageFormat.Bf16) ShrinkRows<Bf16Kv>(sp, xp, n, a, level);
            else ShrinkRows<F32Kv>(sp, xp, n, a, level);
    }

    private static void ShrinkRows<T>(float* s, float* x, int n, in PagedMatrix a, SimdLevel level) where T : struct, IKvElements
    {
        for (int t = 0; t < n; t++) ShrinkRow<T>(s + (long)t * a.Rows, x + (long)t * a.Cols, a, level);
    }

    /// <summary>y (n, bt.Cols) += scale · s (n, r) · Bᵀ, Bᵀ's rows read from pages.</summary>
    public static void Expand(Span<float> y, ReadOnlySpan<float> s, int n, in PagedMatrix bt, float scale, SimdLevel level)
    {
        if (s.Length < n * bt.Rows || y.Length < n * bt.Cols) throw new ArgumentException("expand buffers too small");
        fixed (float* sp = s)
        fixed (float* yp = y)
            if (bt.Format == AdapterPageFormat.Bf16) ExpandRows<Bf16Kv>(yp, sp, n, bt, scale, level);
            else ExpandRows<F32Kv>(yp, sp, n, bt, scale, level);
    }

    private static void ExpandRows<T>(float* y, float* s, int n, in PagedMatrix bt, float scale, SimdLevel level) where T : struct, IKvElements
    {
        for (int t = 0; t < n; t++) ExpandRow<T>(y + (long)t * bt.Cols, s + (long)t * bt.Rows, bt, scale, level);
    }

    /// <summary>s (r) = x · Aᵀ for one token: four rows of A at a time against x loaded once (four independent sums), each
    /// row's sum the same operations in the same order as alone.</summary>
    private static void ShrinkRow<T>(float* s, float* x, in PagedMatrix a, SimdLevel level) where T : struct, IKvElements
    {
        int ce = a.ChunkElements, i = 0;
        for (; i + 4 <= a.Rows; i += 4)
        {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int c = 0; c < a.Chunks; c++)
            {
                Dot4Rows<T>(x + c * ce, a.Chunk(i, c), a.Chunk(i + 1, c), a.Chunk(i + 2, c), a.Chunk(i + 3, c), a.ChunkLength(c), level,
                    out float d0, out float d1, out float d2, out float d3);
                s0 += d0; s1 += d1; s2 += d2; s3 += d3;
            }
            s[i] = s0; s[i + 1] = s1; s[i + 2] = s2; s[i + 3] = s3;
        }
        for (; i < a.Rows; i++)
        {
            float acc = 0;
            for (int c = 0; c < a.Chunks; c++) acc += KvBlocks.Dot<T>(x + c * ce, a.Chunk(i, c), a.ChunkLength(c), level);
            s[i] = acc;
        }
    }

    /// <summary>y += scale · s · Bᵀ for one token: four rows of Bᵀ per pass over y (y loaded and stored once for four), each
    /// element of y getting the same operations in the same order as row by row.</summary>
    private static void ExpandRow<T>(float* y, float* s, in PagedMatrix bt, float scale, SimdLevel level) where T : struct, IKvElements
    {
        int ce = bt.ChunkElements, i = 0;
        for (; i + 4 <= bt.Rows; i += 4)
        {
            float c0 = scale * s[i], c1 = scale * s[i + 1], c2 = scale * s[i + 2], c3 = scale * s[i + 3];
            for (int c = 0; c < bt.Chunks; c++)
                Axpy4Rows<T>(y + c * ce, bt.Chunk(i, c), bt.Chunk(i + 1, c), bt.Chunk(i + 2, c), bt.Chunk(i + 3, c), c0, c1, c2, c3,
                    bt.ChunkLength(c), level);
        }
        for (; i < bt.Rows; i++)
        {
            float coef = scale * s[i];
            for (int c = 0; c < bt.Chunks; c++) KvBlocks.Axpy<T>(y + c * ce, bt.Chunk(i, c), coef, bt.ChunkLength(c), level);
        }
    }

    /// <summary>Four <see cref="KvBlocks.Dot{T}"/>s of x against a0..a3, x loaded once; each result bit-equal to Dot's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4Rows<T>(float* x, byte* a0, byte* a1, byte* a2, byte* a3, int n, SimdLevel level,
        out float s0, out float s1, out float s2, out float s3) where T : struct, IKvElements
    {
        int k = 0;
        s0 = s1 = s2 = s3 = 0;
        if (level == SimdLevel.Vector512 && n >= 16)
        {
            Vector512<float> v0 = default, v1 = default, v2 = default, v3 = default;
            for (; k + 16 <= n; k += 16)
            {
                var xv = Vector512.Load(x + k);
                v0 = Vector512.FusedMultiplyAdd(xv, T.Load512(a0, k), v0);
                v1 = Vector512.FusedMultiplyAdd(xv, T.Load512(a1, k), v1);
                v2 = Vector512.FusedMultiplyAdd(xv, T.Load512(a2, k), v2);
                v3 = Vector512.FusedMultiplyAdd(xv, T.Load512(a3, k), v3);
            }
            s0 = Vector512.Sum(v0); s1 = Vector512.Sum(v1); s2 = Vector512.Sum(v2); s3 = Vector512.Sum(v3);
        }
        else if (level != SimdLevel.Scalar && n >= 8)
        {
            Vector256<float> v0 = default, v1 = default, v2 = default, v3 = default;
            for (; k + 8 <= n; k += 8)
            {
                var xv = Vector256.Load(x + k);
                v0 = Vector256.FusedMultiplyAdd(xv, T.Load256(a0, k), v0);
                v1 = Vector256.FusedMultiplyAdd(xv, T.Load256(a1, k), v1);
                v2 = Vector256.FusedMultiplyAdd(xv, T.Load256(a2, k), v2);
                v3 = Vector256.FusedMultiplyAdd(xv, T.Load256(a3, k), v3);
            }
            s0 = Vector256.Sum(v0); s1 = Vector256.Sum(v1); s2 = Vector256.Sum(v2); s3 = Vector256.Sum(v3);
        }
        for (; k < n; k++)
        {
            float xk = x[k];
            s0 += xk * T.Load(a0, k); s1 += xk * T.Load(a1, k); s2 += xk * T.Load(a2, k); s3 += xk * T.Load(a3, k);
        }
    }

    /// <summary>y += c0 · x0, then c1 · x1, c2 · x2, c3 · x3, element by element with y loaded and stored once: each element
    /// gets the operations of four <see cref="KvBlocks.Axpy{T}"/> calls in turn.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy4Rows<T>(float* y, byte* x0, byte* x1, byte* x2, byte* x3, float c0, float c1, float c2, float c3, int n,
        SimdLevel level) where T : struct, IKvElements
    {
        int k = 0;
        if (level == SimdLevel.Vector512)
        {
            Vector512<float> v0 = Vector512.Create(c0), v1 = Vector512.Create(c1), v2 = Vector512.Create(c2), v3 = Vector512.Create(c3);
            for (; k + 16 <= n; k += 16)
            {
                var yv = Vector512.FusedMultiplyAdd(T.Load512(x0, k), v0, Vector512.Load(y + k));
                yv = Vector512.FusedMultiplyAdd(T.Load512(x1, k), v1, yv);
                yv = Vector512.FusedMultiplyAdd(T.Load512(x2, k), v2, yv);
                Vector512.FusedMultiplyAdd(T.Load512(x3, k), v3, yv).Store(y + k);
            }
        }
        else if (level != SimdLevel.Scalar)
        {
            Vector256<float> v0 = Vector256.Create(c0), v1 = Vector256.Create(c1), v2 = Vector256.Create(c2), v3 = Vector256.Create(c3);
            for (; k + 8 <= n; k += 8)
            {
                var yv = Vector256.FusedMultiplyAdd(T.Load256(x0, k), v0, Vector256.Load(y + k));
                yv = Vector256.FusedMultiplyAdd(T.Load256(x1, k), v1, yv);
                yv = Vector256.FusedMultiplyAdd(T.Load256(x2, k), v2, yv);
                Vector256.FusedMultiplyAdd(T.Load256(x3, k), v3, yv).Store(y + k);
            }
        }
        for (; k < n; k++)
        {
            float yk = y[k];
            yk += c0 * T.Load(x0, k);
            yk += c1 * T.Load(x1, k);
            yk += c2 * T.Load(x2, k);
            yk += c3 * T.Load(x3, k);
            y[k] = yk;
        }
    }

    /// <summary>Four <see cref="KvBlocks.Dot{T}"/>s of a against x0..x3, a loaded once; each result bit-equal to Dot's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<T>(byte* a, float* x0, float* x1, float* x2, float* x3, int n, SimdLevel level,
        out float s0, out float s1, out float s2, out float s3) where T : struct, IKvElements
    {
        int k = 0;
        s0 = s1 = s2 = s3 = 0;
        if (level == SimdLevel.Vector512 && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k + 16 <= n; k += 16)
            {
                var av = T.Load512(a, k);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + k), av, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + k), av, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + k), av, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + k), av, a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        else if (level != SimdLevel.Scalar && n >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k + 8 <= n; k += 8)
            {
                var av = T.Load256(a, k);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x0 + k), av, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x1 + k), av, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(x2 + k), av, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(x3 + k), av, a3);
            }
            s0 = Vector256.Sum(a0); s1 = Vector256.Sum(a1); s2 = Vector256.Sum(a2); s3 = Vector256.Sum(a3);
        }
        for (; k < n; k++)
        {
            float ak = T.Load(a, k);
            s0 += x0[k] * ak; s1 += x1[k] * ak; s2 += x2[k] * ak; s3 += x3[k] * ak;
        }
    }

    /// <summary>Four <see cref="KvBlocks.Axpy{T}"/>s of one x into y0..y3, x loaded once; each bit-equal to Axpy's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy4<T>(float* y0, float* y1, float* y2, float* y3, byte* x, float c0, float c1, float c2, float c3, int n,
        SimdLevel level) where T : struct, IKvElements
    {
        int k = 0;
        if (level == SimdLevel.Vector512)
        {
            Vector512<float> v0 = Vector512.Create(c0), v1 = Vector512.Create(c1), v2 = Vector512.Create(c2), v3 = Vector512.Create(c3);
            for (; k + 16 <= n; k += 16)
            {
                var xv = T.Load512(x, k);
                Vector512.FusedMultiplyAdd(xv, v0, Vector512.Load(y0 + k)).Store(y0 + k);
                Vector512.FusedMultiplyAdd(xv, v1, Vector512.Load(y1 + k)).Store(y1 + k);
                Vector512.FusedMultiplyAdd(xv, v2, Vector512.Load(y2 + k)).Store(y2 + k);
                Vector512.FusedMultiplyAdd(xv, v3, Vector512.Load(y3 + k)).Store(y3 + k);
            }
        }
        else if (level != SimdLevel.Scalar)
        {
            Vector256<float> v0 = Vector256.Create(c0), v1 = Vector256.Create(c1), v2 = Vector256.Create(c2), v3 = Vector256.Create(c3);
            for (; k + 8 <= n; k += 8)
            {
                var xv = T.Load256(x, k);
                Vector256.FusedMultiplyAdd(xv, v0, Vector256.Load(y0 + k)).Store(y0 + k);
                Vector256.FusedMultiplyAdd(xv, v1, Vector256.Load(y1 + k)).Store(y1 + k);
                Vector256.FusedMultiplyAdd(xv, v2, Vector256.Load(y2 + k)).Store(y2 + k);
                Vector256.FusedMultiplyAdd(xv, v3, Vector256.Load(y3 + k)).Store(y3 + k);
            }
        }
        for (; k < n; k++)
        {
            float xk = T.Load(x, k);
            y0[k] += c0 * xk; y1[k] += c1 * xk; y2[k] += c2 * xk; y3[k] += c3 * xk;
        }
    }
}

/// <summary>Scalar twin of <see cref="LoraKernel"/>: element by element through the page table, double accumulation.</summary>
public static class NaiveLora
{
    public static void Apply(Span<float> y, ReadOnlySpan<float> x, int inDim, int outDim, ReadOnlySpan<LoraSegment> segments,
        int layer, LoraTarget target)
    {
        foreach (var seg in segments)
        {
            if (seg.Count == 0 || seg.Adapter is not { } ad || !ad.Targets(layer, target)) continue;
            var a = ad.A(layer, target);
            var bt = ad.BT(layer, target);
            int r = a.Rows;
            var s = new double[r];
            for (int t = seg.Start; t < seg.Start + seg.Count; t++)
            {
                for (int i = 0; i < r; i++)
                {
                    double acc = 0;
                    for (int k = 0; k < inDim; k++) acc += (double)x[t * inDim + k] * a[i, k];
                    s[i] = acc;
                }
                for (int o = 0; o < outDim; o++)
                {
                    double acc = 0;
                    for (int i = 0; i < r; i++) acc += s[i] * bt[i, o];
                    y[t * outDim + o] = (float)(y[t * outDim + o] + ad.Scale * acc);
                }
            }
        }
    }
}
