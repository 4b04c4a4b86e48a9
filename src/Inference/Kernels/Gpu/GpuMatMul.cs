using ILGPU;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code of y (n, rows) = x (n, cols) · Wᵀ with W row-major (rows, cols), in f32 or bf16 (ushort bit
/// patterns widened by a shift, as <see cref="WeightMatrix"/> does). Three shapes: <c>Rows</c> for decode batches (one
/// warp per output, lanes stride over the inner dimension four weights at a time (one 8-byte load of bf16), eight tokens
/// per pass so each weight read feeds eight, a shuffle reduction: no shared memory, no group barrier); <c>Tile64</c>
/// for prefill and large batches on 256-thread groups (a 64-output × 64-token tile, each thread a 4 × 4 block of sums in
/// registers, weight and input tiles of <see cref="TileK"/> columns staged in shared memory); and <c>Tiled</c>, the
/// same for any group size (a tile of <c>Group.DimX</c> outputs × <see cref="TileTokens"/> tokens; ILGPU's CPU
/// accelerator runs it with 4-thread groups). Scalar twin: <see cref="NaiveMatMul"/>.</summary>
internal static class GpuMatMul
{
    /// <summary>Largest group the kernels' shared arrays are sized for.</summary>
    public const int MaxGroup = 256;
    public const int TileTokens = 8;
    public const int TileK = 16;
    /// <summary>Tokens per pass of <see cref="Rows"/>.</summary>
    public const int RowTokens = 8;
    /// <summary>Outputs and tokens of a <see cref="Tile64"/> tile; its group has <see cref="Tile64Threads"/> threads.</summary>
    public const int Tile = 64;
    public const int Tile64Threads = 256;
    private const int TilePad = Tile + 4;

    /// <summary>Grid: ceil(rows / warps per group) groups; warp w of group b computes output b × warps + w.</summary>
    public static void Rows<TW>(ArrayView<float> y, ArrayView<float> x, TW w, MatMulShape s) where TW : struct, IDeviceWeights
    {
        int o = Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;
        if (o >= s.Rows) return; // (the whole warp)
        int lane = Warp.LaneIdx, ws = Warp.WarpSize, cols = s.Cols;
        int quads = cols % 4 == 0 ? cols / 4 : 0;
        long wRow = (long)o * cols;
        for (int t0 = 0; t0 < s.N; t0 += RowTokens)
        {
            int left = s.N - t0;
            long x0 = (long)t0 * cols;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
            for (int q = lane; q < quads; q += ws)
            {
                w.Quad(wRow + 4L * q, out float w0, out float w1, out float w2, out float w3);
                long xi = x0 + 4L * q;
                a0 += Dot4(x, xi, w0, w1, w2, w3);
                if (left > 1) a1 += Dot4(x, xi + cols, w0, w1, w2, w3);
                if (left > 2) a2 += Dot4(x, xi + 2L * cols, w0, w1, w2, w3);
                if (left > 3) a3 += Dot4(x, xi + 3L * cols, w0, w1, w2, w3);
                if (left > 4) a4 += Dot4(x, xi + 4L * cols, w0, w1, w2, w3);
                if (left > 5) a5 += Dot4(x, xi + 5L * cols, w0, w1, w2, w3);
                if (left > 6) a6 += Dot4(x, xi + 6L * cols, w0, w1, w2, w3);
                if (left > 7) a7 += Dot4(x, xi + 7L * cols, w0, w1, w2, w3);
            }
            for (int k = quads * 4 + lane; k < cols; k += ws)
            {
                float wv = w.At(wRow + k);
                long xi = x0 + k;
                a0 += wv * x[xi];
                if (left > 1) a1 += wv * x[xi + cols];
                if (left > 2) a2 += wv * x[xi + 2L * cols];
                if (left > 3) a3 += wv * x[xi + 3L * cols];
                if (left > 4) a4 += wv * x[xi + 4L * cols];
                if (left > 5) a5 += wv * x[xi + 5L * cols];
                if (left > 6) a6 += wv * x[xi + 6L * cols];
                if (left > 7) a7 += wv * x[xi + 7L * cols];
            }
            a0 = WarpSum(a0);
            a1 = WarpSum(a1);
            a2 = WarpSum(a2);
            a3 = WarpSum(a3);
            a4 = WarpSum(a4);
            a5 = WarpSum(a5);
            a6 = WarpSum(a6);
            a7 = WarpSum(a7);
            if (lane == 0) StoreColumn(y, s, o, t0, a0, a1, a2, a3, a4, a5, a6, a7);
        }
    }

    private static float Dot4(ArrayView<float> x, long i, float w0, float w1, float w2, float w3) =>
        w0 * x[i] + w1 * x[i + 1] + w2 * x[i + 2] + w3 * x[i + 3];

    /// <summary>The sum over the warp, in lane 0.</summary>
    private static float WarpSum(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1) v += Warp.ShuffleDown(v, offset);
        return v;
    }

    /// <summary>Grid: ceil(rows / 64) × ceil(n / 64) groups of <see cref="Tile64Threads"/> threads. Thread (tx, ty) =
    /// (tid % 16, tid / 16) sums outputs o0 + 4tx + i and tokens t0 + 4ty + j (i, j &lt; 4).</summary>
    public static void Tile64<TW>(ArrayView<float> y, ArrayView<float> x, TW w, MatMulShape s) where TW : struct, IDeviceWeights
    {
        int tid = Group.IdxX, tilesO = (s.Rows + Tile - 1) / Tile;
        int o0 = Grid.IdxX % tilesO * Tile, t0 = Grid.IdxX / tilesO * Tile;
        int tx = tid % 16, ty = tid / 16;
        var ws = SharedMemory.Allocate<float>(TileK * TilePad); // [k][output]
        var xs = SharedMemory.Allocate<float>(TileK * TilePad); // [k][token]
        int lr = tid / 4, lk = tid % 4 * 4; // this thread loads row lr, columns lk..lk+3 of both tiles
        bool quads = s.Cols % 4 == 0;
        var a0 = new Acc4();
        var a1 = new Acc4();
        var a2 = new Acc4();
        var a3 = new Acc4();
        for (int k0 = 0; k0 < s.Cols; k0 += TileK)
        {
            int k = k0 + lk, ro = o0 + lr, rt = t0 + lr;
            float w0 = 0, w1 = 0, w2 = 0, w3 = 0;
            if (ro < s.Rows)
            {
                long at = (long)ro * s.Cols + k;
                if (quads && k + 3 < s.Cols) w.Quad(at, out w0, out w1, out w2, out w3);
                else
                {
                    if (k < s.Cols) w0 = w.At(at);
                    if (k + 1 < s.Cols) w1 = w.At(at + 1);
                    if (k + 2 < s.Cols) w2 = w.At(at + 2);
                    if (k + 3 < s.Cols) w3 = w.At(at + 3);
                }
            }
            ws[lk * TilePad + lr] = w0;
            ws[(lk + 1) * TilePad + lr] = w1;
            ws[(lk + 2) * TilePad + lr] = w2;
            ws[(lk + 3) * TilePad + lr] = w3;
            long xt = (long)rt * s.Cols + k;
            bool tokenIn = rt < s.N;
            xs[lk * TilePad + lr] = tokenIn && k < s.Cols ? x[xt] : 0f;
            xs[(lk + 1) * TilePad + lr] = tokenIn && k + 1 < s.Cols ? x[xt + 1] : 0f;
            xs[(lk + 2) * TilePad + lr] = tokenIn && k + 2 < s.Cols ? x[xt + 2] : 0f;
            xs[(lk + 3) * TilePad + lr] = tokenIn && k + 3 < s.Cols ? x[xt + 3] : 0f;
            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                int wb = kk * TilePad + tx * 4, xb = kk * TilePad + ty * 4;
                float b0 = xs[xb], b1 = xs[xb + 1], b2 = xs[xb + 2], b3 = xs[xb + 3];
                a0.Add(ws[wb], b0, b1, b2, b3);
                a1.Add(ws[wb + 1], b0, b1, b2, b3);
                a2.Add(ws[wb + 2], b0, b1, b2, b3);
                a3.Add(ws[wb + 3], b0, b1, b2, b3);
            }
            Group.Barrier();
        }
        int o = o0 + tx * 4, t = t0 + ty * 4;
        a0.Store(y, s, o, t);
        a1.Store(y, s, o + 1, t);
        a2.Store(y, s, o + 2, t);
        a3.Store(y, s, o + 3, t);
    }

    /// <summary>One output's sums for four consecutive tokens.</summary>
    private struct Acc4
    {
        private float _t0, _t1, _t2, _t3;

        public void Add(float wv, float x0, float x1, float x2, float x3)
        {
            _t0 += wv * x0;
            _t1 += wv * x1;
            _t2 += wv * x2;
            _t3 += wv * x3;
        }

        public readonly void Store(ArrayView<float> y, MatMulShape s, int o, int t)
        {
            if (o >= s.Rows) return;
            long at = (long)t * s.Rows + o;
            if (t < s.N) y[at] = _t0;
            if (t + 1 < s.N) y[at + s.Rows] = _t1;
            if (t + 2 < s.N) y[at + 2L * s.Rows] = _t2;
            if (t + 3 < s.N) y[at + 3L * s.Rows] = _t3;
        }
    }

    /// <summary>Grid: TilesO(g) × ceil(n / TileTokens) groups; group g threads.</summary>
    public static void Tiled<TW>(ArrayView<float> y, ArrayView<float> x, TW w, MatMulShape s) where TW : struct, IDeviceWeights
    {
        int tid = Group.IdxX, g = Group.DimX;
        int tilesO = (s.Rows + g - 1) / g;
        int o0 = Grid.IdxX % tilesO * g, t0 = Grid.IdxX / tilesO * TileTokens;
        var ws = SharedMemory.Allocate<float>(MaxGroup * (TileK + 1)); // (g, TileK) weight tile, padded rows
        var xs = SharedMemory.Allocate<float>(TileTokens * TileK);      // (TileTokens, TileK) input tile
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        for (int k0 = 0; k0 < s.Cols; k0 += TileK)
        {
            for (int i = tid; i < g * TileK; i += g)
            {
                int r = i / TileK, kk = i % TileK, ro = o0 + r, k = k0 + kk;
                ws[r * (TileK + 1) + kk] = ro < s.Rows && k < s.Cols ? w.At((long)ro * s.Cols + k) : 0f;
            }
            LoadInputTile(xs, x, s, t0, k0, tid, g);
            Group.Barrier();
            int wb = tid * (TileK + 1);
            for (int kk = 0; kk < TileK; kk++)
            {
                float wv = ws[wb + kk];
                a0 += wv * xs[kk];
                a1 += wv * xs[TileK + kk];
                a2 += wv * xs[2 * TileK + kk];
                a3 += wv * xs[3 * TileK + kk];
                a4 += wv * xs[4 * TileK + kk];
                a5 += wv * xs[5 * TileK + kk];
                a6 += wv * xs[6 * TileK + kk];
                a7 += wv * xs[7 * TileK + kk];
            }
            Group.Barrier();
        }
        StoreColumn(y, s, o0 + tid, t0, a0, a1, a2, a3, a4, a5, a6, a7);
    }

    private static void LoadInputTile(ArrayView<float> xs, ArrayView<float> x, MatMulShape s, int t0, int k0, int tid, int g)
    {
        for (int i = tid; i < TileTokens * TileK; i += g)
        {
            int t = t0 + i / TileK, k = k0 + i % TileK;
            xs[i] = t < s.N && k < s.Cols ? x[(long)t * s.Cols + k] : 0f;
        }
    }

    private static void StoreColumn(ArrayView<float> y, MatMulShape s, int o, int t0,
        float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7)
    {
        if (o >= s.Rows) return;
        int left = s.N - t0;
        long at = (long)t0 * s.Rows + o;
        if (left > 0) y[at] = a0;
        if (left > 1) y[at + s.Rows] = a1;
        if (left > 2) y[at + 2L * s.Rows] = a2;
        if (left > 3) y[at + 3L * s.Rows] = a3;
        if (left > 4) y[at + 4L * s.Rows] = a4;
        if (left > 5) y[at + 5L * s.Rows] = a5;
        if (left > 6) y[at + 6L * s.Rows] = a6;
        if (left > 7) y[at + 7L * s.Rows] = a7;
    }
}

/// <summary>Read access to a device weight matrix as float32, whatever its storage: the matmul kernels are generic over
/// it, so one kernel body serves f32 and bf16 weights (ILGPU specialises each at load).</summary>
internal interface IDeviceWeights
{
    float At(long index);

    /// <summary>Elements index .. index + 3 (index a multiple of 4).</summary>
    void Quad(long index, out float w0, out float w1, out float w2, out float w3);
}

/// <summary>f32 weights.</summary>
internal readonly struct F32Weights(ArrayView<float> w) : IDeviceWeights
{
    private readonly ArrayView<float> _w = w;
    public float At(long index) => _w[index];

    public void Quad(long index, out float w0, out float w1, out float w2, out float w3)
    {
        w0 = _w[index];
        w1 = _w[index + 1];
        w2 = _w[index + 2];
        w3 = _w[index + 3];
    }
}

/// <summary>bf16 weights (bit patterns), widened by a shift as <see cref="WeightMatrix"/> does; four at a time through
/// one 8-byte load.</summary>
internal readonly struct BF16Weights(ArrayView<ushort> w) : IDeviceWeights
{
    private readonly ArrayView<ushort> _w = w;
    private readonly ArrayView<ulong> _quads = w.Cast<ulong>();
    public float At(long index) => Interop.IntAsFloat((uint)_w[index] << 16);

    public void Quad(long index, out float w0, out float w1, out float w2, out float w3)
    {
        ulong v = _quads[index / 4];
        uint lo = (uint)v, hi = (uint)(v >> 32);
        w0 = Interop.IntAsFloat(lo << 16);
        w1 = Interop.IntAsFloat(lo & 0xFFFF0000u);
        w2 = Interop.IntAsFloat(hi << 16);
        w3 = Interop.IntAsFloat(hi & 0xFFFF0000u);
    }
}

/// <summary>Sizes of a device matmul: n token rows, W (Rows, Cols).</summary>
internal readonly record struct MatMulShape(int N, int Rows, int Cols);
