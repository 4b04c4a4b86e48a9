using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>What a matmul does with its product before it leaves the kernel.</summary>
public enum MatMulEpilogue
{
    /// <summary>y = x Wᵀ.</summary>
    Store,
    /// <summary>y += x Wᵀ (a residual add: one rounding of the same sum, so the bits of a separate add pass).</summary>
    Add,
    /// <summary>y = silu(x Wᵀ) · (x Upᵀ): the MLP's gate and up products meet in a small tile and only their product is
    /// written (with <see cref="Ops.SiluMul"/>, the arithmetic of the separate pass).</summary>
    SiluMul,
}

/// <summary>One output of a fused matmul: y (n, W.Rows) at address Y; <paramref name="Up"/>: the second matrix of a
/// <see cref="MatMulEpilogue.SiluMul"/> target (same shape as W).</summary>
public readonly record struct MatMulTarget(nint Y, WeightMatrix W, MatMulEpilogue Epilogue = MatMulEpilogue.Store, WeightMatrix? Up = null)
{
    /// <summary>Multiply-adds per input row.</summary>
    public long WorkPerRow => (long)W.Rows * W.Cols * (Up is null ? 1 : 2);
    public bool Packed => W.Packed || Up is { Packed: true };
    public bool Q8 => W.Type == WeightType.Q8 || Up is { Type: WeightType.Q8 };
}

/// <summary>y = x Wᵀ for a batch of input rows: y[b, r] = Σ_k x[b, k] · W[r, k].
/// W is [rows, cols] row-major (F32, or BF16 widened to F32 on the fly); x is [n, cols]; y is [n, rows].
/// Q8 weights go to <see cref="MatMulQ8"/> (inputs quantized per block of 32, integer dot products).
/// Parallel over chunks of output rows; within a chunk, 4 weight rows × 4 input rows are computed
/// per pass so that each weight load feeds four sequences (batched decode, prefill). A target may add its product
/// to y or combine two products (<see cref="MatMulEpilogue"/>) inside the same chunk.</summary>
public static unsafe partial class MatMulKernel
{
    private const int BatchBlock = 64;    // input rows kept hot in L2 while a weight chunk streams past

    public static void Forward(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n, SimdLevel level, WorkerPool? pool = null)
    {
        if (x.Length < n * w.Cols || y.Length < n * w.Rows)
            throw new ArgumentException($"matmul buffers too small for n={n}, W=[{w.Rows},{w.Cols}]");
        fixed (float* yp = y)
        fixed (float* xp = x)
            Forward(yp, xp, w, n, level, pool);
    }

    public static void Forward(float* y, float* x, WeightMatrix w, int n, SimdLevel level, WorkerPool? pool = null) =>
        Forward([new MatMulTarget((nint)y, w)], x, n, level, pool);

    /// <summary>Several matrices applied to the same input in one parallel region (q/k/v, gate/up), so the
    /// cores meet at one barrier instead of one per matrix. <paramref name="pool"/>: the workers (null: the shared pool).</summary>
    public static void Forward(ReadOnlySpan<MatMulTarget> targets, float* x, int n, SimdLevel level, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        int workers = pool.Workers;
        long work = 0;
        int totalRows = 0;
        bool anyPacked = false, anyBf16 = false;
        foreach (var t in targets)
        {
            if (t.Up is { } up && (up.Rows != t.W.Rows || up.Cols != t.W.Cols))
                throw new ArgumentException($"SiLU·mul pair of unequal shapes: [{t.W.Rows},{t.W.Cols}] and [{up.Rows},{up.Cols}]");
            if ((t.Epilogue == MatMulEpilogue.SiluMul) != (t.Up != null))
                throw new ArgumentException("a SiLU·mul target needs its up matrix, and only it has one");
            work += t.WorkPerRow * n;
            totalRows += t.W.Rows;
            anyPacked |= t.Packed;
            anyBf16 |= t.W.Type == WeightType.BF16 || t.Up is { Type: WeightType.BF16 };
        }
        var xq = default(Q8Input);
        foreach (var t in targets)
        {
            if (!t.Q8) continue;
            if (!MatMulQ8.FastPath(level))
            {
                Serial(targets, x, n, level);
                return;
            }
            xq = Q8Input.Quantize(x, n, t.W.Cols, MatMulQ8.Wide(level));   // the targets share x, so one quantization serves all
            break;
        }
        // the packed kernel's interleaved inputs (not beside Q8 targets), or the 256-bit bf16 tiles' split inputs (Q8
        // targets beside them read xq): made once here for every chunk of the region
        float* xt = anyPacked && level == SimdLevel.Vector512 && n >= 8 && xq.Blocks == 0 ? InterleaveInputs(x, n, targets[0].W.Cols, pool)
            : anyBf16 && Tiles256(level) ? SplitInputs(x, n, targets[0].W.Cols, ref _interleaved)
            : null;
        // chunks of whole 4-row tiles; several per core so a slow core does not hold the others back
        int chunkRows = Math.Max(32, (totalRows / (workers * 4) + 31) & ~31);
        if (work < 1 << 16 || totalRows <= chunkRows)
        {
            foreach (var t in targets) Chunk(t, x, xt, xq, n, 0, t.W.Rows, level);
            return;
        }
        var job = _job ??= new RowsJob();
        int count = job.Prepare(targets, x, xt, xq, n, chunkRows, level);
        try
        {
            pool.Run(job, count);
        }
        finally
        {
            job.Release();
        }
    }

    /// <summary>Without a Q8 fast path (scalar level, or neither AVX-VNNI nor AVX2 with FMA): every target on the calling thread, Q8 ones by
    /// <see cref="MatMulQ8.Naive"/> (the same numbers, slowly).</summary>
    private static void Serial(ReadOnlySpan<MatMulTarget> targets, float* x, int n, SimdLevel level)
    {
        foreach (var t in targets)
        {
            if (!t.Q8)
            {
                Chunk(t, x, null, default, n, 0, t.W.Rows, level);
                continue;
            }
            var y = new Span<float>((float*)t.Y, n * t.W.Rows);
            var xs = new ReadOnlySpan<float>(x, n * t.W.Cols);
            switch (t.Epilogue)
            {
                case MatMulEpilogue.Store: Naive(y, xs, t.W, n); break;
                case MatMulEpilogue.Add: NaiveAdd(y, xs, t.W, n); break;
                default: NaiveSiluMul(y, xs, t.W, t.Up!, n); break;
            }
        }
    }

    [ThreadStatic] private static RowsJob? _job;

    /// <summary>The chunks of one fused matmul: (target, first row) of every run of chunkRows output rows. One per
    /// calling thread, reused (its arrays grow, rarely), so a region allocates nothing.</summary>
    private sealed class RowsJob : PoolJob
    {
        private MatMulTarget[] _targets = new MatMulTarget[3];
        private (int Target, int Row)[] _chunks = new (int, int)[64];
        private float* _x, _xt;
        private Q8Input _xq;
        private int _n, _chunkRows;
        private SimdLevel _level;

        public int Prepare(ReadOnlySpan<MatMulTarget> targets, float* x, float* xt, in Q8Input xq, int n, int chunkRows, SimdLevel level)
        {
            if (_targets.Length < targets.Length) _targets = new MatMulTarget[targets.Length];
            targets.CopyTo(_targets);
            int needed = targets.Length;
            foreach (var t in targets) needed += t.W.Rows / chunkRows;
            if (_chunks.Length < needed) _chunks = new (int, int)[needed];
            int count = 0;
            for (int i = 0; i < targets.Length; i++)
                for (int r = 0; r < targets[i].W.Rows; r += chunkRows) _chunks[count++] = (i, r);
            _x = x; _xt = xt; _xq = xq;
            (_n, _chunkRows, _level) = (n, chunkRows, level);
            return count;
        }

        /// <summary>Drops the references to the weights once the region is over.</summary>
        public void Release() => Array.Clear(_targets);

        public override void Execute(int chunk)
        {
            var (i, r0) = _chunks[chunk];
            var t = _targets[i];
            Chunk(t, _x, _xt, _xq, _n, r0, Math.Min(t.W.Rows, r0 + _chunkRows), _level);
        }
    }

    [ThreadStatic] private static float[]? _interleaved;

    /// <summary>Input rows in groups of 8, interleaved column by column ([n/8][cols][8]), so the packed kernel's
    /// eight broadcasts per column come from one cache line instead of eight rows a row-stride apart.
    /// The buffer belongs to the calling thread and is reused (it grows, rarely).</summary>
    /// <remarks>A prefill's inputs (twice <see cref="InterleaveRegionRows"/> rows or more: hundreds of KB to MBs) are
    /// interleaved by the pool, in runs of <see cref="InterleaveRegionRows"/> rows, in a region of their own; fewer rows
    /// on the calling thread (a region's start and end would cost more than the copy).</remarks>
    private static float* InterleaveInputs(float* x, int n, int cols, WorkerPool pool)
    {
        if (n < 2 * InterleaveRegionRows || pool.Workers == 1) return InterleaveInputs(x, n, cols, ref _interleaved);
        float* dst = Interleaved(n, cols, ref _interleaved);
        var job = _interleaveJob ??= new InterleaveJob();
        job.Set(x, dst, n / 8, cols);
        pool.Run(job, (n / 8 + InterleaveRegionRows / 8 - 1) / (InterleaveRegionRows / 8));
        return dst;
    }

    /// <summary>Input rows per chunk of a parallel interleave, and half the fewest rows interleaved in parallel.</summary>
    internal const int InterleaveRegionRows = 64;

    [ThreadStatic] private static InterleaveJob? _interleaveJob;

    /// <summary>Groups of 8 input rows of one interleave, <see cref="InterleaveRegionRows"/> / 8 groups per chunk.</summary>
    private sealed class InterleaveJob : PoolJob
    {
        private float* _x, _dst;
        private int _groups, _cols;

        public void Set(float* x, float* dst, int groups, int cols)
        {
            _x = x;
            _dst = dst;
            (_groups, _cols) = (groups, cols);
        }

        public override void Execute(int chunk)
        {
            int g0 = chunk * (InterleaveRegionRows / 8);
            InterleaveGroups(_x, _dst, _cols, g0, Math.Min(_groups, g0 + InterleaveRegionRows / 8));
        }
    }

    /// <summary><see cref="InterleaveInputs(float*, int, int, WorkerPool)"/> on the calling thread, into the given
    /// per-thread buffer (pinned; grows, rarely).</summary>
    internal static float* InterleaveInputs(float* x, int n, int cols, ref float[]? buffer)
    {
        float* dst = Interleaved(n, cols, ref buffer);
        InterleaveGroups(x, dst, cols, 0, n / 8);
        return dst;
    }

    /// <summary>The buffer of an interleave of n rows (pinned: its address stays valid after the fixed block).</summary>
    private static float* Interleaved(int n, int cols, ref float[]? buffer)
    {
        int size = n / 8 * cols * 8;
        if (buffer == null || buffer.Length < size) buffer = GC.AllocateArray<float>(Math.Max(size, 4096), pinned: true);
        fixed (float* dst = buffer) return dst;
    }

    /// <summary>Groups [g0, g1) of 8 input rows to their interleaved [cols][8] blocks.</summary>
    private static void InterleaveGroups(float* x, float* dst, int cols, int g0, int g1)
    {
        for (int g = g0; g < g1; g++)
        {
            float* d = dst + (long)g * cols * 8;
            float* src = x + (long)g * 8 * cols;
            int k = 0;
            if (Avx.IsSupported)
                for (; k + 8 <= cols; k += 8) Transpose8x8(src + k, cols, d + k * 8);
            for (int j = 0; j < 8; j++)
                for (int kk = k; kk < cols; kk++) d[kk * 8 + j] = src[(long)j * cols + kk];
        }
    }

    /// <summary>Eight rows of eight floats (row stride <paramref name="stride"/>) to eight columns: d[k · 8 + j] =
    /// s[j · stride + k]; the unpack, shuffle and 128-bit-swap steps of the usual 8×8 transpose, so a block of the
    /// interleaved input costs eight loads and eight stores instead of 64 scattered scalar stores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, int stride, float* d)
    {
        var r0 = Avx.LoadVector256(s);
        var r1 = Avx.LoadVector256(s + stride);
        var r2 = Avx.LoadVector256(s + 2L * stride);
        var r3 = Avx.LoadVector256(s + 3L * stride);
        var r4 = Avx.LoadVector256(s + 4L * stride);
        var r5 = Avx.LoadVector256(s + 5L * stride);
        var r6 = Avx.LoadVector256(s + 6L * stride);
        var r7 = Avx.LoadVector256(s + 7L * stride);
        // pairs of rows, lane by lane: (r0[0], r1[0], r0[1], r1[1] | r0[4], r1[4], r0[5], r1[5]) and the rest
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // quads: (r0[k], r1[k], r2[k], r3[k]) for k = 0, 4 in u0, 1, 5 in u1, 2, 6 in u2, 3, 7 in u3; u4..u7 for rows 4..7
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + 8, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 16, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 24, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 32, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 40, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 48, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 56, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>Computes output rows [r0, r1) of input rows [b0, b1): y[b · ys + r] for those b and r (ys: y's row stride;
    /// y may point before the memory it writes, so that a block of the product lands in a small scratch tile). Input rows
    /// go in blocks of <see cref="BatchBlock"/> counted from b0 (callers pass b0 = 0 or a multiple of the block), so which
    /// kernel computes a row, and thus its bits, depends on its place in the batch only.</summary>
    internal static void Rows(float* y, int ys, float* x, float* xt, in Q8Input xq, WeightMatrix w, int b0, int b1, int r0, int r1, SimdLevel level)
    {
        if (w.Type == WeightType.Q8)
        {
            MatMulQ8.Rows(y, ys, xq, w, b0, b1, r0, r1);
            return;
        }
        if (w.Packed)
        {
            PackedRows(y, ys, x, xt, w, b0, b1, r0, r1, level);
            return;
        }
        if (Tiles256(level))
        {
            Rows256(y, ys, x, xt, w, b0, b1, r0, r1);
            return;
        }
        int cols = w.Cols;
        bool f32 = w.Type == WeightType.F32;
        bool fast = level == SimdLevel.Vector512 && cols % (f32 ? 16 : 32) == 0;
        for (int bb = b0; bb < b1; bb += BatchBlock)
        {
            int be = Math.Min(b1, bb + BatchBlock);
            int r = r0;
            if (fast)
            {
                for (; r + 4 <= r1; r += 4)
                {
                    int b = bb;
                    for (; b + 4 <= be; b += 4)
                    {
                        if (f32) TileF32x4x4(y, x, (float*)w.Data, ys, cols, r, b);
                        else TileBF16x4x4(y, x, (ushort*)w.Data, ys, cols, r, b);
                    }
                    for (; b < be; b++)
                    {
                        if (f32) TileF32x4x1(y, x, (float*)w.Data, ys, cols, r, b);
                        else TileBF16x4x1(y, x, (ushort*)w.Data, ys, cols, r, b);
                    }
                }
            }
            for (; r < r1; r++)
                for (int b = bb; b < be; b++)
                    y[(long)b * ys + r] = f32
                        ? DotF32((float*)w.Data + (long)r * cols, x + (long)b * cols, cols, level)
                        : DotBF16((ushort*)w.Data + (long)r * cols, x + (long)b * cols, cols, level);
        }
    }

    /// <summary>Packed weights: rows [r0, r1) in pairs of 16-row panels; each step loads 32 rows' weights for one
    /// column and multiplies them by one broadcast input value per sequence (8 sequences per pass).</summary>
    private static void PackedRows(float* y, int ys, float* x, float* xt, WeightMatrix w, int b0, int b1, int r0, int r1, SimdLevel level)
    {
        int cols = w.Cols;
        if (level != SimdLevel.Vector512 || !Avx512F.IsSupported)
        {
            for (int b = b0; b < b1; b++)
                for (int r = r0; r < r1; r++)
                {
                    float s = 0;
                    for (int k = 0; k < cols; k++) s += w.At(r, k) * x[(long)b * cols + k];
                    y[(long)b * ys + r] = s;
                }
            return;
        }
        bool f32 = w.Type == WeightType.F32;
        for (int bb = b0; bb < b1; bb += BatchBlock)
        {
            int be = Math.Min(b1, bb + BatchBlock);
            // bf16 panels that a full block's eight passes of 8 inputs read: widened to f32 once here, not once per pass
            float* wide = !f32 && xt != null && be - bb >= WidenPanelMinRows && cols <= WidenPanelMaxCols ? WidePanels() : null;
            for (int r = r0; r < r1; r += 2 * WeightMatrix.PanelRows)
            {
                long panel = (long)r * cols;   // start of the first of the two panels
                float* pf = f32 ? (float*)w.Data + panel : wide;
                if (wide != null) WidenPanelPair((ushort*)w.Data + panel, wide, 2 * WeightMatrix.PanelRows * cols);
                int b = bb;
                for (; b + 8 <= be && xt != null; b += 8)
                {
                    float* xg = xt + (long)(b / 8) * cols * 8;   // bb and BatchBlock are multiples of 8
                    if (pf != null) PanelF32x8(y, xg, pf, ys, cols, r, b);
                    else PanelBF16x8(y, xg, (ushort*)w.Data + panel, ys, cols, r, b);
                }
                for (; b < be; b++)   // (a widened block is whole passes)
                {
                    if (f32) PanelF32x1(y, x, pf, ys, cols, r, b);
                    else PanelBF16x1(y, x, (ushort*)w.Data + panel, ys, cols, r, b);
                }
            }
        }
    }

    /// <summary>Inputs of a batch block from which a bf16 panel pair is widened to f32 before its passes: a whole block,
    /// eight passes of 8 (a prefill's blocks). With four passes (decode at batch 32) the widened pair, twice the bytes
    /// and past L1, made the step slower on a Zen 4 EPYC (BENCHMARKS.md Run Q). The f32 kernels on widened weights give
    /// the bf16 kernels' bits (widening is exact; the same FMAs in the same order), so where this applies changes no
    /// result.</summary>
    internal const int WidenPanelMinRows = BatchBlock;

    /// <summary>Columns up to which a widened panel pair (32 rows of f32: 512 KB at 4096 columns) stays in a core's L2.</summary>
    internal const int WidenPanelMaxCols = 4096;

    [ThreadStatic] private static float[]? _widePanels;

    /// <summary>This thread's buffer for one widened panel pair (pinned; allocated once per thread at the largest size).</summary>
    private static float* WidePanels()
    {
        _widePanels ??= GC.AllocateArray<float>(2 * WeightMatrix.PanelRows * WidenPanelMaxCols, pinned: true);
        fixed (float* p = _widePanels) return p;
    }

    /// <summary>count bf16 values (a multiple of 16) to f32, in order.</summary>
    private static void WidenPanelPair(ushort* src, float* dst, int count)
    {
        for (int i = 0; i < count; i += 16) Widen16(src + i).Store(dst + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen16(ushort* p) =>
        Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    /// <param name="xg">8 input rows interleaved: (cols, 8).</param>
    private static void PanelF32x8(float* y, float* xg, float* p0, int ys, int cols, int r, int b)
    {
        float* p1 = p0 + 16 * cols;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int k = 0; k < cols; k++)
        {
            var u = Vector512.Load(p0 + k * 16);
            var w = Vector512.Load(p1 + k * 16);
            float* xk = xg + k * 8;
            var v = Vector512.Create(xk[0]); a0 = Vector512.FusedMultiplyAdd(u, v, a0); c0 = Vector512.FusedMultiplyAdd(w, v, c0);
            v = Vector512.Create(xk[1]); a1 = Vector512.FusedMultiplyAdd(u, v, a1); c1 = Vector512.FusedMultiplyAdd(w, v, c1);
            v = Vector512.Create(xk[2]); a2 = Vector512.FusedMultiplyAdd(u, v, a2); c2 = Vector512.FusedMultiplyAdd(w, v, c2);
            v = Vector512.Create(xk[3]); a3 = Vector512.FusedMultiplyAdd(u, v, a3); c3 = Vector512.FusedMultiplyAdd(w, v, c3);
            v = Vector512.Create(xk[4]); a4 = Vector512.FusedMultiplyAdd(u, v, a4); c4 = Vector512.FusedMultiplyAdd(w, v, c4);
            v = Vector512.Create(xk[5]); a5 = Vector512.FusedMultiplyAdd(u, v, a5); c5 = Vector512.FusedMultiplyAdd(w, v, c5);
            v = Vector512.Create(xk[6]); a6 = Vector512.FusedMultiplyAdd(u, v, a6); c6 = Vector512.FusedMultiplyAdd(w, v, c6);
            v = Vector512.Create(xk[7]); a7 = Vector512.FusedMultiplyAdd(u, v, a7); c7 = Vector512.FusedMultiplyAdd(w, v, c7);
        }
        StorePanels8(y, ys, r, b, a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    /// <param name="xg">8 input rows interleaved: (cols, 8).</param>
    private static void PanelBF16x8(float* y, float* xg, ushort* p0, int ys, int cols, int r, int b)
    {
        ushort* p1 = p0 + 16 * cols;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int k = 0; k < cols; k++)
        {
            Ahead(p0 + k * 16 + PanelAhead);   // a line holds 2 columns: every other pass asks for the same line again
            Ahead(p1 + k * 16 + PanelAhead);
            var u = Widen16(p0 + k * 16);
            var w = Widen16(p1 + k * 16);
            float* xk = xg + k * 8;
            var v = Vector512.Create(xk[0]); a0 = Vector512.FusedMultiplyAdd(u, v, a0); c0 = Vector512.FusedMultiplyAdd(w, v, c0);
            v = Vector512.Create(xk[1]); a1 = Vector512.FusedMultiplyAdd(u, v, a1); c1 = Vector512.FusedMultiplyAdd(w, v, c1);
            v = Vector512.Create(xk[2]); a2 = Vector512.FusedMultiplyAdd(u, v, a2); c2 = Vector512.FusedMultiplyAdd(w, v, c2);
            v = Vector512.Create(xk[3]); a3 = Vector512.FusedMultiplyAdd(u, v, a3); c3 = Vector512.FusedMultiplyAdd(w, v, c3);
            v = Vector512.Create(xk[4]); a4 = Vector512.FusedMultiplyAdd(u, v, a4); c4 = Vector512.FusedMultiplyAdd(w, v, c4);
            v = Vector512.Create(xk[5]); a5 = Vector512.FusedMultiplyAdd(u, v, a5); c5 = Vector512.FusedMultiplyAdd(w, v, c5);
            v = Vector512.Create(xk[6]); a6 = Vector512.FusedMultiplyAdd(u, v, a6); c6 = Vector512.FusedMultiplyAdd(w, v, c6);
            v = Vector512.Create(xk[7]); a7 = Vector512.FusedMultiplyAdd(u, v, a7); c7 = Vector512.FusedMultiplyAdd(w, v, c7);
        }
        StorePanels8(y, ys, r, b, a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePanels8(float* y, int ys, int r, int b,
        Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3,
        Vector512<float> a4, Vector512<float> a5, Vector512<float> a6, Vector512<float> a7,
        Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3,
        Vector512<float> c4, Vector512<float> c5, Vector512<float> c6, Vector512<float> c7)
    {
        float* y0 = y + (long)b * ys + r;
        a0.Store(y0); c0.Store(y0 + 16); y0 += ys;
        a1.Store(y0); c1.Store(y0 + 16); y0 += ys;
        a2.Store(y0); c2.Store(y0 + 16); y0 += ys;
        a3.Store(y0); c3.Store(y0 + 16); y0 += ys;
        a4.Store(y0); c4.Store(y0 + 16); y0 += ys;
        a5.Store(y0); c5.Store(y0 + 16); y0 += ys;
        a6.Store(y0); c6.Store(y0 + 16); y0 += ys;
        a7.Store(y0); c7.Store(y0 + 16);
    }

    private static void PanelF32x1(float* y, float* x, float* p0, int ys, int cols, int r, int b)
    {
        float* p1 = p0 + 16 * cols;
        float* x0 = x + (long)b * cols;
        // two accumulators per panel (even/odd columns) to hide the FMA latency
        Vector512<float> a0 = default, a1 = default, c0 = default, c1 = default;
        int k = 0;
        for (; k + 2 <= cols; k += 2)
        {
            Ahead(p0 + k * 16 + PanelAhead);        // 2 columns of 16 floats: two lines of each panel per pass
            Ahead(p0 + k * 16 + PanelAhead + 16);
            Ahead(p1 + k * 16 + PanelAhead);
            Ahead(p1 + k * 16 + PanelAhead + 16);
            var v = Vector512.Create(x0[k]);
            var v2 = Vector512.Create(x0[k + 1]);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p0 + k * 16), v, a0);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Load(p1 + k * 16), v, c0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(p0 + k * 16 + 16), v2, a1);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Load(p1 + k * 16 + 16), v2, c1);
        }
        for (; k < cols; k++)
        {
            var v = Vector512.Create(x0[k]);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p0 + k * 16), v, a0);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Load(p1 + k * 16), v, c0);
        }
        float* y0 = y + (long)b * ys + r;
        (a0 + a1).Store(y0);
        (c0 + c1).Store(y0 + 16);
    }

    /// <summary>Panel elements ahead of use that the panel kernels ask for (512 elements: 1 KB of a bf16 panel, 2 KB of
    /// an f32 one). A panel pair is two streams 16 · cols elements apart, each matrix a few hundred KB read once per
    /// step. On a Zen 5 EPYC (`engine decode`, alternating rounds, BENCHMARKS.md Run O): bf16 batch 1 12–19% less time per
    /// step, bf16 batch 8 about 10% less, f32 batch 1 within the noise; the same hint in the int8 panel made it slower
    /// and was left out. Changes no arithmetic.</summary>
    private const int PanelAhead = 512;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Ahead(void* p)
    {
        if (Sse.IsSupported) Sse.Prefetch0(p);
    }

    private static void PanelBF16x1(float* y, float* x, ushort* p0, int ys, int cols, int r, int b)
    {
        ushort* p1 = p0 + 16 * cols;
        float* x0 = x + (long)b * cols;
        Vector512<float> a0 = default, a1 = default, c0 = default, c1 = default;
        int k = 0;
        for (; k + 2 <= cols; k += 2)
        {
            Ahead(p0 + k * 16 + PanelAhead);   // 2 columns of 16 bf16: one line of each panel per pass
            Ahead(p1 + k * 16 + PanelAhead);
            var v = Vector512.Create(x0[k]);
            var v2 = Vector512.Create(x0[k + 1]);
            a0 = Vector512.FusedMultiplyAdd(Widen16(p0 + k * 16), v, a0);
            c0 = Vector512.FusedMultiplyAdd(Widen16(p1 + k * 16), v, c0);
            a1 = Vector512.FusedMultiplyAdd(Widen16(p0 + k * 16 + 16), v2, a1);
            c1 = Vector512.FusedMultiplyAdd(Widen16(p1 + k * 16 + 16), v2, c1);
        }
        for (; k < cols; k++)
        {
            var v = Vector512.Create(x0[k]);
            a0 = Vector512.FusedMultiplyAdd(Widen16(p0 + k * 16), v, a0);
            c0 = Vector512.FusedMultiplyAdd(Widen16(p1 + k * 16), v, c0);
        }
        float* y0 = y + (long)b * ys + r;
        (a0 + a1).Store(y0);
        (c0 + c1).Store(y0 + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lo(Vector512<ushort> u) => Vector512.ShiftLeft(Vector512.WidenLower(u), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Hi(Vector512<ushort> u) => Vector512.ShiftLeft(Vector512.WidenUpper(u), 16).AsSingle();

    private static void TileF32x4x4(float* y, float* x, float* w, int ys, int cols, int r, int b)
    {
        float* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x + (long)b * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int k = 0; k < cols; k += 16)
        {
            var v0 = Vector512.Load(x0 + k); var v1 = Vector512.Load(x1 + k);
            var v2 = Vector512.Load(x2 + k); var v3 = Vector512.Load(x3 + k);
            var u = Vector512.Load(w0 + k);
            a00 = Vector512.FusedMultiplyAdd(u, v0, a00); a01 = Vector512.FusedMultiplyAdd(u, v1, a01);
            a02 = Vector512.FusedMultiplyAdd(u, v2, a02); a03 = Vector512.FusedMultiplyAdd(u, v3, a03);
            u = Vector512.Load(w1 + k);
            a10 = Vector512.FusedMultiplyAdd(u, v0, a10); a11 = Vector512.FusedMultiplyAdd(u, v1, a11);
            a12 = Vector512.FusedMultiplyAdd(u, v2, a12); a13 = Vector512.FusedMultiplyAdd(u, v3, a13);
            u = Vector512.Load(w2 + k);
            a20 = Vector512.FusedMultiplyAdd(u, v0, a20); a21 = Vector512.FusedMultiplyAdd(u, v1, a21);
            a22 = Vector512.FusedMultiplyAdd(u, v2, a22); a23 = Vector512.FusedMultiplyAdd(u, v3, a23);
            u = Vector512.Load(w3 + k);
            a30 = Vector512.FusedMultiplyAdd(u, v0, a30); a31 = Vector512.FusedMultiplyAdd(u, v1, a31);
            a32 = Vector512.FusedMultiplyAdd(u, v2, a32); a33 = Vector512.FusedMultiplyAdd(u, v3, a33);
        }
        Store4x4(y, ys, r, b, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33);
    }

    private static void TileBF16x4x4(float* y, float* x, ushort* w, int ys, int cols, int r, int b)
    {
        ushort* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x + (long)b * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int k = 0; k < cols; k += 32)
        {
            var p0 = Vector512.Load(x0 + k); var q0 = Vector512.Load(x0 + k + 16);
            var p1 = Vector512.Load(x1 + k); var q1 = Vector512.Load(x1 + k + 16);
            var p2 = Vector512.Load(x2 + k); var q2 = Vector512.Load(x2 + k + 16);
            var p3 = Vector512.Load(x3 + k); var q3 = Vector512.Load(x3 + k + 16);
            var u = Vector512.Load(w0 + k); var lo = Lo(u); var hi = Hi(u);
            a00 = Vector512.FusedMultiplyAdd(hi, q0, Vector512.FusedMultiplyAdd(lo, p0, a00));
            a01 = Vector512.FusedMultiplyAdd(hi, q1, Vector512.FusedMultiplyAdd(lo, p1, a01));
            a02 = Vector512.FusedMultiplyAdd(hi, q2, Vector512.FusedMultiplyAdd(lo, p2, a02));
            a03 = Vector512.FusedMultiplyAdd(hi, q3, Vector512.FusedMultiplyAdd(lo, p3, a03));
            u = Vector512.Load(w1 + k); lo = Lo(u); hi = Hi(u);
            a10 = Vector512.FusedMultiplyAdd(hi, q0, Vector512.FusedMultiplyAdd(lo, p0, a10));
            a11 = Vector512.FusedMultiplyAdd(hi, q1, Vector512.FusedMultiplyAdd(lo, p1, a11));
            a12 = Vector512.FusedMultiplyAdd(hi, q2, Vector512.FusedMultiplyAdd(lo, p2, a12));
            a13 = Vector512.FusedMultiplyAdd(hi, q3, Vector512.FusedMultiplyAdd(lo, p3, a13));
            u = Vector512.Load(w2 + k); lo = Lo(u); hi = Hi(u);
            a20 = Vector512.FusedMultiplyAdd(hi, q0, Vector512.FusedMultiplyAdd(lo, p0, a20));
            a21 = Vector512.FusedMultiplyAdd(hi, q1, Vector512.FusedMultiplyAdd(lo, p1, a21));
            a22 = Vector512.FusedMultiplyAdd(hi, q2, Vector512.FusedMultiplyAdd(lo, p2, a22));
            a23 = Vector512.FusedMultiplyAdd(hi, q3, Vector512.FusedMultiplyAdd(lo, p3, a23));
            u = Vector512.Load(w3 + k); lo = Lo(u); hi = Hi(u);
            a30 = Vector512.FusedMultiplyAdd(hi, q0, Vector512.FusedMultiplyAdd(lo, p0, a30));
            a31 = Vector512.FusedMultiplyAdd(hi, q1, Vector512.FusedMultiplyAdd(lo, p1, a31));
            a32 = Vector512.FusedMultiplyAdd(hi, q2, Vector512.FusedMultiplyAdd(lo, p2, a32));
            a33 = Vector512.FusedMultiplyAdd(hi, q3, Vector512.FusedMultiplyAdd(lo, p3, a33));
        }
        Store4x4(y, ys, r, b, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4x4(float* y, int ys, int r, int b,
        Vector512<float> a00, Vector512<float> a01, Vector512<float> a02, Vector512<float> a03,
        Vector512<float> a10, Vector512<float> a11, Vector512<float> a12, Vector512<float> a13,
        Vector512<float> a20, Vector512<float> a21, Vector512<float> a22, Vector512<float> a23,
        Vector512<float> a30, Vector512<float> a31, Vector512<float> a32, Vector512<float> a33)
    {
        float* y0 = y + (long)b * ys + r, y1 = y0 + ys, y2 = y1 + ys, y3 = y2 + ys;
        y0[0] = Vector512.Sum(a00); y1[0] = Vector512.Sum(a01); y2[0] = Vector512.Sum(a02); y3[0] = Vector512.Sum(a03);
        y0[1] = Vector512.Sum(a10); y1[1] = Vector512.Sum(a11); y2[1] = Vector512.Sum(a12); y3[1] = Vector512.Sum(a13);
        y0[2] = Vector512.Sum(a20); y1[2] = Vector512.Sum(a21); y2[2] = Vector512.Sum(a22); y3[2] = Vector512.Sum(a23);
        y0[3] = Vector512.Sum(a30); y1[3] = Vector512.Sum(a31); y2[3] = Vector512.Sum(a32); y3[3] = Vector512.Sum(a33);
    }

    private static void TileF32x4x1(float* y, float* x, float* w, int ys, int cols, int r, int b)
    {
        float* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x + (long)b * cols;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int k = 0; k < cols; k += 16)
        {
            var v = Vector512.Load(x0 + k);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + k), v, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + k), v, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + k), v, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + k), v, a3);
        }
        float* yr = y + (long)b * ys + r;
        yr[0] = Vector512.Sum(a0); yr[1] = Vector512.Sum(a1); yr[2] = Vector512.Sum(a2); yr[3] = Vector512.Sum(a3);
    }

    private static void TileBF16x4x1(float* y, float* x, ushort* w, int ys, int cols, int r, int b)
    {
        ushort* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x0 = x + (long)b * cols;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int k = 0; k < cols; k += 32)
        {
            var p = Vector512.Load(x0 + k);
            var q = Vector512.Load(x0 + k + 16);
            var u = Vector512.Load(w0 + k); a0 = Vector512.FusedMultiplyAdd(Hi(u), q, Vector512.FusedMultiplyAdd(Lo(u), p, a0));
            u = Vector512.Load(w1 + k); a1 = Vector512.FusedMultiplyAdd(Hi(u), q, Vector512.FusedMultiplyAdd(Lo(u), p, a1));
            u = Vector512.Load(w2 + k); a2 = Vector512.FusedMultiplyAdd(Hi(u), q, Vector512.FusedMultiplyAdd(Lo(u), p, a2));
            u = Vector512.Load(w3 + k); a3 = Vector512.FusedMultiplyAdd(Hi(u), q, Vector512.FusedMultiplyAdd(Lo(u), p, a3));
        }
        float* yr = y + (long)b * ys + r;
        yr[0] = Vector512.Sum(a0); yr[1] = Vector512.Sum(a1); yr[2] = Vector512.Sum(a2); yr[3] = Vector512.Sum(a3);
    }

    /// <summary>One dot product (edge rows): at 256 bits or more, one chain of 8-wide fused multiply-adds over k in
    /// ascending order, summed across its lanes, then the last columns one at a time (<see cref="Rows256"/>'s tiles do the
    /// same arithmetic per output).</summary>
    internal static float DotF32(float* w, float* x, int n, SimdLevel level)
    {
        if (level < SimdLevel.Vector256) return TailF32(0, w, x, 0, n);
        Vector256<float> a = default;
        int end = n & ~7;
        for (int k = 0; k < end; k += 8) a = Vector256.FusedMultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), a);
        return TailF32(Vector256.Sum(a), w, x, end, n);
    }

    internal static float DotBF16(ushort* w, float* x, int n, SimdLevel level)
    {
        if (level < SimdLevel.Vector256) return TailBF16(0, w, x, 0, n);
        Vector256<float> a = default;
        int end = n & ~7;
        for (int k = 0; k < end; k += 8)
        {
            var u = Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(w + k).ToVector256Unsafe()), 16).AsSingle();
            a = Vector256.FusedMultiplyAdd(u, Vector256.Load(x + k), a);
        }
        return TailBF16(Vector256.Sum(a), w, x, end, n);
    }

    /// <summary>The plain scalar twin: y[b, r] = Σ_k x[b, k] · W[r, k], one multiply-add at a time (Q8: <see cref="MatMulQ8.Naive"/>).</summary>
    public static void Naive(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        if (w.Type == WeightType.Q8)
        {
            MatMulQ8.Naive(y, x, w, n);
            return;
        }
        for (int b = 0; b < n; b++)
            for (int r = 0; r < w.Rows; r++)
            {
                float s = 0;
                for (int k = 0; k < w.Cols; k++) s += w.At(r, k) * x[b * w.Cols + k];
                y[b * w.Rows + r] = s;
            }
    }
}
