using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>The epilogues of <see cref="MatMulEpilogue"/>: a chunk's product goes through a small tile per calling
/// thread (input rows × <see cref="TileRows"/> output rows, in L1) and from there is added to y, or meets the up
/// product and leaves as silu(gate) · up. The arithmetic per element is that of the separate passes it replaces (one
/// add; <see cref="Ops.SiluMul"/>), so the bits do not change; what goes away is a pass over (n, rows) buffers on one
/// core between two parallel regions, and the buffers themselves.</summary>
public static unsafe partial class MatMulKernel
{
    private const int TileRows = 64;   // output rows per epilogue tile: two pairs of packed panels, four Q8 panels

    [ThreadStatic] private static float[]? _tile;   // (2, BatchBlock, TileRows) the gate (or plain) and up products

    /// <summary>y (n, W.Rows) += x (n, W.Cols) · Wᵀ: the residual add in the projection's output.</summary>
    public static void ForwardAdd(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n, SimdLevel level, WorkerPool? pool = null)
    {
        if (x.Length < n * w.Cols || y.Length < n * w.Rows)
            throw new ArgumentException($"matmul buffers too small for n={n}, W=[{w.Rows},{w.Cols}]");
        fixed (float* yp = y)
        fixed (float* xp = x)
            Forward([new MatMulTarget((nint)yp, w, MatMulEpilogue.Add)], xp, n, level, pool);
    }

    /// <summary>h (n, gate.Rows) = silu(x · Gateᵀ) · (x · Upᵀ), x (n, gate.Cols): the MLP's intermediate written once.</summary>
    public static void ForwardSiluMul(Span<float> h, ReadOnlySpan<float> x, WeightMatrix gate, WeightMatrix up, int n, SimdLevel level, WorkerPool? pool = null)
    {
        if (x.Length < n * gate.Cols || h.Length < n * gate.Rows)
            throw new ArgumentException($"matmul buffers too small for n={n}, W=[{gate.Rows},{gate.Cols}]");
        fixed (float* hp = h)
        fixed (float* xp = x)
            Forward([new MatMulTarget((nint)hp, gate, MatMulEpilogue.SiluMul, up)], xp, n, level, pool);
    }

    /// <summary>Output rows [r0, r1) of one target for all n input rows, with its epilogue.</summary>
    internal static void Chunk(in MatMulTarget t, float* x, float* xt, in Q8Input xq, int n, int r0, int r1, SimdLevel level)
    {
        float* y = (float*)t.Y;
        int rows = t.W.Rows;
        if (t.Epilogue == MatMulEpilogue.Store)
        {
            Rows(y, rows, x, xt, xq, t.W, 0, n, r0, r1, level);
            return;
        }
        _tile ??= GC.AllocateArray<float>(2 * BatchBlock * TileRows, pinned: true);
        fixed (float* tile = _tile)
        {
            float* up = tile + BatchBlock * TileRows;
            for (int b0 = 0; b0 < n; b0 += BatchBlock)
            {
                int b1 = Math.Min(n, b0 + BatchBlock), nb = b1 - b0;
                for (int ra = r0; ra < r1; ra += TileRows)
                {
                    int rb = Math.Min(r1, ra + TileRows), width = rb - ra;
                    long shift = (long)b0 * width + ra;   // element (b, r) of the product lands at tile[(b - b0) · width + r - ra]
                    Rows(tile - shift, width, x, xt, xq, t.W, b0, b1, ra, rb, level);
                    if (t.Epilogue == MatMulEpilogue.Add)
                    {
                        for (int i = 0; i < nb; i++) AddRow(y + (long)(b0 + i) * rows + ra, tile + i * width, width);
                        continue;
                    }
                    Rows(up - shift, width, x, xt, xq, t.Up!, b0, b1, ra, rb, level);
                    var g = new Span<float>(tile, nb * width);
                    Ops.SiluMul(g, g, new ReadOnlySpan<float>(up, nb * width));
                    for (int i = 0; i < nb; i++)
                        new ReadOnlySpan<float>(tile + i * width, width).CopyTo(new Span<float>(y + (long)(b0 + i) * rows + ra, width));
                }
            }
        }
    }

    /// <summary>y[i] += s[i]: one rounded add per element at any width.</summary>
    private static void AddRow(float* y, float* s, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) (Vector512.Load(y + i) + Vector512.Load(s + i)).Store(y + i);
        for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) + Vector256.Load(s + i)).Store(y + i);
        for (; i < n; i++) y[i] += s[i];
    }

    [ThreadStatic] private static float[]? _naiveGate, _naiveUp;

    /// <summary>Scalar twin of <see cref="ForwardAdd"/>: <see cref="Naive"/>'s sums, each added to y.</summary>
    public static void NaiveAdd(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        var s = Row(ref _naiveGate, w.Rows);
        for (int b = 0; b < n; b++)
        {
            Naive(s, x.Slice(b * w.Cols, w.Cols), w, 1);
            for (int r = 0; r < w.Rows; r++) y[b * w.Rows + r] += s[r];
        }
    }

    /// <summary>Scalar twin of <see cref="ForwardSiluMul"/>: <see cref="Naive"/> for gate and up, then <see cref="NaiveOps.SiluMul"/>.</summary>
    public static void NaiveSiluMul(Span<float> h, ReadOnlySpan<float> x, WeightMatrix gate, WeightMatrix up, int n)
    {
        var g = Row(ref _naiveGate, gate.Rows);
        var u = Row(ref _naiveUp, up.Rows);
        for (int b = 0; b < n; b++)
        {
            var xb = x.Slice(b * gate.Cols, gate.Cols);
            Naive(g, xb, gate, 1);
            Naive(u, xb, up, 1);
            NaiveOps.SiluMul(h.Slice(b * gate.Rows, gate.Rows), g, u);
        }
    }

    private static Span<float> Row(ref float[]? buffer, int length)
    {
        if (buffer == null || buffer.Length < length) buffer = new float[length];
        return buffer.AsSpan(0, length);
    }
}
