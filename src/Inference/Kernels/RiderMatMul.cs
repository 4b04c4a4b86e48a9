namespace Loom.Inference.Kernels;

/// <summary>Rows of another computation (a training chunk) that ride along with the products of a forward pass: before
/// each product the kernels ask the rider for its rows for the same weights, and compute both in one parallel region,
/// each chunk of weight rows for the rider's rows and then for the pass's own (one pass over the weights from memory
/// for both). The rider's inputs and outputs are its own buffers, so neither side's results depend on the other.</summary>
public interface IProductRider
{
    /// <summary>Called on the forward pass's thread before a product whose first weight is <paramref name="first"/>:
    /// the rider's rows for that product, or null when it has none for it.</summary>
    RiderRows? Board(WeightMatrix first);
}

/// <summary>A rider's rows for one product: one, two or three weights applied to the same input, each written as it is
/// (no epilogue: the rider's products are plain stores whatever the pass does with its own).</summary>
/// <param name="X">(.., W1.Cols) input; rows [Row0, Row0 + Rows) take part.</param>
/// <param name="Y1">(.., W1.Rows) output of the first weight, the same rows.</param>
/// <param name="Y2">(.., W2.Rows) output of the second weight (null: the product has one).</param>
/// <param name="Y3">(.., W3.Rows) output of the third weight (null: the product has fewer).</param>
/// <param name="Row0">First row (a multiple of 8, so the rows fall in the same 8-row tiles as in a product of the whole buffer).</param>
/// <param name="Rows">Rows taking part.</param>
public readonly record struct RiderRows(float[] X, float[] Y1, float[]? Y2, float[]? Y3, int Row0, int Rows,
    WeightMatrix W1, WeightMatrix? W2 = null, WeightMatrix? W3 = null);

/// <summary>The fused product of <see cref="IProductRider"/>: the pass's targets (with their epilogues) and the rider's
/// rows through the same weights in one region. The region's chunks are the pass's (target, weight rows); a chunk
/// computes the rider's products for those weight rows of every rider weight that is the target's (its W, or the up
/// matrix of a SiLU·mul target), then the pass's own. Every output row comes from <see cref="MatMulKernel"/>'s row
/// kernels with the same 8-row grouping as a product of its own buffer, so each side gets bitwise what a separate
/// product would give it.</summary>
public static unsafe class RiderMatMul
{
    [ThreadStatic] private static float[]? _riderInterleaved;
    [ThreadStatic] private static float[]? _passInterleaved;
    [ThreadStatic] private static FusedJob? _job;

    /// <summary>Whether the fused region serves this product: F32 or BF16 weights on AVX-512, and every rider weight one of
    /// the pass's (Q8 weights, the other levels and anything else run the two products one after the other).</summary>
    public static bool Supports(ReadOnlySpan<MatMulTarget> targets, in RiderRows rider, SimdLevel level)
    {
        if (level != SimdLevel.Vector512) return false;
        foreach (var t in targets)
            if (t.Q8) return false;
        return Owner(targets, rider.W1) >= 0 && (rider.W2 is null || Owner(targets, rider.W2) >= 0) && (rider.W3 is null || Owner(targets, rider.W3) >= 0);
    }

    /// <summary>The pass's target whose chunks carry the rider's product of w, or -1.</summary>
    private static int Owner(ReadOnlySpan<MatMulTarget> targets, WeightMatrix w)
    {
        for (int i = 0; i < targets.Length; i++)
            if (ReferenceEquals(targets[i].W, w) || ReferenceEquals(targets[i].Up, w))
                return w.Rows == targets[i].W.Rows ? i : -1;
        return -1;
    }

    /// <param name="targets">The pass's outputs, weights and epilogues.</param>
    /// <param name="x">(n, cols) the pass's input.</param>
    /// <param name="rider">The rider's rows; <paramref name="riderX"/> and <paramref name="riderY"/> point at its first row.</param>
    public static void Forward(ReadOnlySpan<MatMulTarget> targets, float* x, int n, in RiderRows rider, float* riderX, ReadOnlySpan<nint> riderY,
        SimdLevel level, WorkerPool pool)
    {
        if (!Supports(targets, rider, level)) throw new ArgumentException("the fused region serves F32 and BF16 weights on AVX-512, the rider's among the pass's");
        int workers = pool.Workers, cols = targets[0].W.Cols, totalRows = 0;
        bool anyPacked = false;
        long work = 0;
        foreach (var t in targets)
        {
            totalRows += t.W.Rows;
            anyPacked |= t.Packed;
            work += t.WorkPerRow * n;
        }
        long passWork = work;
        Span<(nint Y, WeightMatrix? W, int Owner)> rides = [(riderY[0], rider.W1, Owner(targets, rider.W1)),
            (rider.W2 is null ? 0 : riderY[1], rider.W2, rider.W2 is null ? -1 : Owner(targets, rider.W2)),
            (rider.W3 is null ? 0 : riderY[2], rider.W3, rider.W3 is null ? -1 : Owner(targets, rider.W3))];
        bool riderPacked = false;
        foreach (var r in rides)
            if (r.W is { } w)
            {
                riderPacked |= w.Packed;
                work += (long)w.Rows * w.Cols * rider.Rows;
            }
        // the same interleaving MatMulKernel.Forward does for each side's own product
        float* xt = anyPacked && n >= 8 ? MatMulKernel.InterleaveInputs(x, n, cols, ref _passInterleaved) : null;
        float* rt = riderPacked && rider.Rows >= 8 ? MatMulKernel.InterleaveInputs(riderX, rider.Rows, cols, ref _riderInterleaved) : null;
        int chunkRows = Math.Max(32, (totalRows / (workers * 4) + 31) & ~31);
        // where the pass's own product would run on this thread in whole targets, so does the fused one (the pass's
        // epilogue tiles, and so its bits, follow its chunks)
        bool serial = passWork < 1 << 16 || totalRows <= chunkRows;
        if (serial) chunkRows = int.MaxValue;
        var job = _job ??= new FusedJob();
        int count = job.Prepare(targets, rides, x, xt, n, riderX, rt, rider.Rows, chunkRows, level);
        try
        {
            if (serial)
                for (int c = 0; c < count; c++) job.Execute(c);
            else pool.Run(job, count);
        }
        finally
        {
            job.Release();
        }
    }

    /// <summary>Chunks of chunkRows weight rows of each of the pass's targets: the rider's rows first, then the pass's.</summary>
    private sealed class FusedJob : PoolJob
    {
        private MatMulTarget[] _targets = new MatMulTarget[3];
        private readonly (nint Y, WeightMatrix? W, int Owner)[] _rides = new (nint, WeightMatrix?, int)[3];
        private (int Target, int Row)[] _chunks = new (int, int)[64];
        private float* _x, _xt, _rx, _rt;
        private int _n, _riderRows, _chunkRows;
        private SimdLevel _level;

        public int Prepare(ReadOnlySpan<MatMulTarget> targets, ReadOnlySpan<(nint, WeightMatrix?, int)> rides, float* x, float* xt, int n,
            float* rx, float* rt, int riderRows, int chunkRows, SimdLevel level)
        {
            if (_targets.Length < targets.Length) _targets = new MatMulTarget[targets.Length];
            targets.CopyTo(_targets);
            rides.CopyTo(_rides);
            int needed = targets.Length;
            foreach (var t in targets) needed += t.W.Rows / chunkRows;
            if (_chunks.Length < needed) _chunks = new (int, int)[needed];
            int count = 0;
            for (int i = 0; i < targets.Length; i++)
                for (int r = 0; r < targets[i].W.Rows; r += Math.Min(chunkRows, targets[i].W.Rows)) _chunks[count++] = (i, r);
            _x = x; _xt = xt; _rx = rx; _rt = rt;
            (_n, _riderRows, _chunkRows, _level) = (n, riderRows, chunkRows, level);
            return count;
        }

        public void Release()
        {
            Array.Clear(_targets);
            Array.Clear(_rides);
        }

        public override void Execute(int chunk)
        {
            var (i, r0) = _chunks[chunk];
            var t = _targets[i];
            int r1 = (int)Math.Min(t.W.Rows, (long)r0 + _chunkRows);
            foreach (var ride in _rides)
                if (ride.Owner == i && ride.W is { } w)
                    MatMulKernel.Rows((float*)ride.Y, w.Rows, _rx, _rt, default, w, 0, _riderRows, r0, r1, _level);
            MatMulKernel.Chunk(t, _x, _xt, default, _n, r0, r1, _level);
        }
    }
}
