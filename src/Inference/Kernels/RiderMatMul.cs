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

/// <summary>A rider's rows for one product (one, two or three weights applied to the same input).</summary>
/// <param name="X">(.., first.Cols) input; rows [Row0, Row0 + Rows) take part.</param>
/// <param name="Y1">(.., W1.Rows) output of the first weight, the same rows.</param>
/// <param name="Y2">(.., W2.Rows) output of the second weight (null: the product has one).</param>
/// <param name="Y3">(.., W3.Rows) output of the third weight (null: the product has fewer).</param>
/// <param name="Row0">First row (a multiple of 8, so the rows fall in the same 8-row tiles as in a product of the whole buffer).</param>
/// <param name="Rows">Rows taking part.</param>
public readonly record struct RiderRows(float[] X, float[] Y1, float[]? Y2, float[]? Y3, int Row0, int Rows);

/// <summary>The fused product of <see cref="IProductRider"/>: y_i = x · W_iᵀ for the pass's n rows and the rider's rows
/// in one region. Every output row is computed by <see cref="MatMulKernel"/>'s own row kernels with the same 8-row
/// grouping as a product of its own buffer, so each side gets bitwise what a separate product would give it.</summary>
public static unsafe class RiderMatMul
{
    [ThreadStatic] private static float[]? _riderInterleaved;
    [ThreadStatic] private static float[]? _passInterleaved;
    [ThreadStatic] private static FusedJob? _job;

    /// <summary>Whether the fused region serves these weights at this level (F32 or BF16 on AVX-512; Q8 and the other
    /// levels run the two products one after the other).</summary>
    public static bool Supports(ReadOnlySpan<MatMulTarget> targets, SimdLevel level)
    {
        if (level != SimdLevel.Vector512) return false;
        foreach (var t in targets)
            if (t.W.Type == WeightType.Q8) return false;
        return true;
    }

    /// <param name="targets">The pass's outputs and weights.</param>
    /// <param name="x">(n, cols) the pass's input.</param>
    /// <param name="riderX">(.., cols) the rider's input at its first row.</param>
    /// <param name="riderY">The rider's outputs at its first row, one per target.</param>
    /// <param name="riderRows">The rider's rows.</param>
    public static void Forward(ReadOnlySpan<MatMulTarget> targets, float* x, int n, float* riderX, ReadOnlySpan<nint> riderY, int riderRows,
        SimdLevel level, WorkerPool pool)
    {
        if (!Supports(targets, level)) throw new ArgumentException("the fused region serves F32 and BF16 weights on AVX-512");
        int workers = pool.Workers, cols = targets[0].W.Cols, totalRows = 0;
        bool anyPacked = false;
        long work = 0;
        foreach (var t in targets)
        {
            totalRows += t.W.Rows;
            anyPacked |= t.W.Packed;
            work += (long)t.W.Rows * t.W.Cols * (n + riderRows);
        }
        // the same interleaving MatMulKernel.Forward does for each side's own product
        float* xt = anyPacked && n >= 8 ? MatMulKernel.InterleaveInputs(x, n, cols, ref _passInterleaved) : null;
        float* rt = anyPacked && riderRows >= 8 ? MatMulKernel.InterleaveInputs(riderX, riderRows, cols, ref _riderInterleaved) : null;
        int chunkRows = Math.Max(32, (totalRows / (workers * 4) + 31) & ~31);
        var job = _job ??= new FusedJob();
        int count = job.Prepare(targets, riderY, x, xt, n, riderX, rt, riderRows, chunkRows, level);
        try
        {
            if (work < 1 << 16 || count == 1)
                for (int c = 0; c < count; c++) job.Execute(c);
            else pool.Run(job, count);
        }
        finally
        {
            job.Release();
        }
    }

    /// <summary>Chunks of chunkRows weight rows of each target: the rider's rows first, then the pass's.</summary>
    private sealed class FusedJob : PoolJob
    {
        private MatMulTarget[] _targets = new MatMulTarget[3];
        private nint[] _riderY = new nint[3];
        private (int Target, int Row)[] _chunks = new (int, int)[64];
        private float* _x, _xt, _rx, _rt;
        private int _n, _riderRows, _chunkRows;
        private SimdLevel _level;

        public int Prepare(ReadOnlySpan<MatMulTarget> targets, ReadOnlySpan<nint> riderY, float* x, float* xt, int n, float* rx, float* rt,
            int riderRows, int chunkRows, SimdLevel level)
        {
            if (_targets.Length < targets.Length)
            {
                _targets = new MatMulTarget[targets.Length];
                _riderY = new nint[targets.Length];
            }
            targets.CopyTo(_targets);
            riderY[..targets.Length].CopyTo(_riderY);
            int needed = targets.Length;
            foreach (var t in targets) needed += t.W.Rows / chunkRows;
            if (_chunks.Length < needed) _chunks = new (int, int)[needed];
            int count = 0;
            for (int i = 0; i < targets.Length; i++)
                for (int r = 0; r < targets[i].W.Rows; r += chunkRows) _chunks[count++] = (i, r);
            _x = x; _xt = xt; _rx = rx; _rt = rt;
            (_n, _riderRows, _chunkRows, _level) = (n, riderRows, chunkRows, level);
            return count;
        }

        public void Release() => Array.Clear(_targets);

        public override void Execute(int chunk)
        {
            var (i, r0) = _chunks[chunk];
            var t = _targets[i];
            int r1 = Math.Min(t.W.Rows, r0 + _chunkRows);
            MatMulKernel.Rows((float*)_riderY[i], _rx, _rt, default, t.W, _riderRows, r0, r1, _level);
            MatMulKernel.Rows((float*)t.Y, _x, _xt, default, t.W, _n, r0, r1, _level);
        }
    }
}
