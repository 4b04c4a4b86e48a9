namespace Loom.Inference.Kernels;

public sealed unsafe partial class CpuKernels
{
    private IProductRider? _rider;
    private Exception? _riderFault;

    /// <summary>Products computed with a rider's rows in one region, and products the rider boarded that ran as two
    /// products (Q8 weights, levels below AVX-512).</summary>
    public long FusedProducts { get; private set; }
    public long UnfusedRiderProducts { get; private set; }

    /// <summary>Lets <paramref name="rider"/> ride along with every product until the scope is disposed (one forward pass
    /// on this instance's thread). A fault in the rider never reaches the pass: it stops the ride and is thrown by the
    /// scope's <see cref="RideScope.Complete"/>.</summary>
    public RideScope Ride(IProductRider rider)
    {
        if (_rider is not null) throw new InvalidOperationException("a rider is already boarded");
        _rider = rider;
        _riderFault = null;
        return new RideScope(this);
    }

    /// <summary>The boarding of one rider: dispose it after the forward pass.</summary>
    public readonly struct RideScope(CpuKernels kernels) : IDisposable
    {
        /// <summary>Ends the ride; throws the rider's fault, if it had one.</summary>
        public void Complete()
        {
            kernels._rider = null;
            if (kernels._riderFault is { } e)
            {
                kernels._riderFault = null;
                throw new InvalidOperationException("the rider of a forward pass failed", e);
            }
        }

        public void Dispose() => kernels._rider = null;
    }

    /// <summary>Asks the rider for its rows of this product; when it has some, computes both (in one region where the
    /// weights allow it: then returns true, the pass's product done with its epilogue) or the rider's alone as its own
    /// call would (then returns false, and the caller runs the pass's). <paramref name="targets"/>: the pass's outputs,
    /// pinned by the caller.</summary>
    private bool RideAlong(ReadOnlySpan<MatMulTarget> targets, float* x, int n)
    {
        RiderRows rows;
        try
        {
            if (_rider!.Board(targets[0].W) is not { } r) return false;
            rows = r;
            Validate(rows);
        }
        catch (Exception e)
        {
            _riderFault = e;
            _rider = null;
            return false;
        }
        var w1 = rows.W1;
        int cols = w1.Cols, m = rows.Rows;
        fixed (float* rx = rows.X)
        fixed (float* y1 = rows.Y1)
        fixed (float* y2 = rows.Y2)
        fixed (float* y3 = rows.Y3)
        {
            Span<nint> ry = [(nint)(y1 + (long)rows.Row0 * w1.Rows),
                rows.W2 is null ? 0 : (nint)(y2 + (long)rows.Row0 * rows.W2.Rows),
                rows.W3 is null ? 0 : (nint)(y3 + (long)rows.Row0 * rows.W3.Rows)];
            float* riderX = rx + (long)rows.Row0 * cols;
            if (RiderMatMul.Supports(targets, rows, Level) && targets[0].W.Cols == cols)
            {
                RiderMatMul.Forward(targets, x, n, rows, riderX, ry, Level, Pool);
                FusedProducts++;
                return true;
            }
            // the rider's product exactly as its own call would run it, then the pass's
            UnfusedRiderProducts++;
            var rider = _rider;
            _rider = null;
            try
            {
                var rxs = new ReadOnlySpan<float>(riderX, m * cols);
                var y1s = new Span<float>((float*)ry[0], m * w1.Rows);
                if (rows.W2 is not { } w2) MatMul(y1s, rxs, w1, m);
                else
                {
                    var w3 = rows.W3;
                    MatMul(y1s, w1, new Span<float>((float*)ry[1], m * w2.Rows), w2, w3 is null ? default : new Span<float>((float*)ry[2], m * w3.Rows), w3, rxs, m);
                }
            }
            finally
            {
                _rider = rider;
            }
        }
        return false;
    }

    private bool RideAlong(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n, MatMulEpilogue epilogue = MatMulEpilogue.Store, WeightMatrix? up = null)
    {
        if (x.Length < n * w.Cols || y.Length < n * w.Rows) return false; // the pass's own product reports it
        fixed (float* yp = y)
        fixed (float* xp = x)
            return RideAlong([new MatMulTarget((nint)yp, w, epilogue, up)], xp, n);
    }

    private bool RideAlong(Span<float> y1, WeightMatrix w1, Span<float> y2, WeightMatrix w2, Span<float> y3, WeightMatrix? w3, ReadOnlySpan<float> x, int n)
    {
        if (x.Length < n * w1.Cols || y1.Length < n * w1.Rows || y2.Length < n * w2.Rows || (w3 != null && y3.Length < n * w3.Rows)
            || w1.Cols != w2.Cols || (w3 != null && w3.Cols != w1.Cols)) return false;
        fixed (float* p1 = y1)
        fixed (float* p2 = y2)
        fixed (float* p3 = y3)
        fixed (float* xp = x)
        {
            return w3 == null
                ? RideAlong([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2)], xp, n)
                : RideAlong([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2), new MatMulTarget((nint)p3, w3)], xp, n);
        }
    }

    private static void Validate(in RiderRows r)
    {
        int cols = r.W1.Cols;
        long end = (long)r.Row0 + r.Rows;
        if (r.Rows <= 0 || r.Row0 < 0 || r.Row0 % 8 != 0) throw new ArgumentException($"rider rows [{r.Row0}, {end}) do not start on an 8-row tile");
        if (r.X.Length < end * cols) throw new ArgumentException("rider input too small");
        if (r.Y1.Length < end * r.W1.Rows) throw new ArgumentException("rider output too small");
        if ((r.W2 is null) != (r.Y2 is null) || (r.W3 is null) != (r.Y3 is null) || (r.W2 is null && r.W3 is not null))
            throw new ArgumentException("the rider's outputs do not match its weights");
        if (r.W2 is { } w2 && (w2.Cols != cols || r.Y2!.Length < end * w2.Rows)) throw new ArgumentException("rider output too small");
        if (r.W3 is { } w3 && (w3.Cols != cols || r.Y3!.Length < end * w3.Rows)) throw new ArgumentException("rider output too small");
    }
}
