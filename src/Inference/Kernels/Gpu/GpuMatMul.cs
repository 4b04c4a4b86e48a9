using ILGPU;
using ILGPU.Algorithms;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code of y (n, rows) = x (n, cols) · Wᵀ with W row-major (rows, cols), in f32 or bf16 (ushort bit
/// patterns widened by a shift, as <see cref="WeightMatrix"/> does); the store routes each output (<see cref="MatMulOut"/>:
/// stacked q/k/v or gate/up to their buffers, bias, residual add). Three shapes: <c>Rows</c> for decode batches up to 32
/// tokens (a warp sums four outputs for four tokens a pass with two-at-a-time loads and shuffle sums; warps of a group
/// split the inner dimension of matrices of few rows); <c>Tile64</c> for prefill and large batches on 256-thread groups
/// (a 64-output × 64-token tile, each thread a 4 × 4 block of sums in registers, weight and input tiles of
/// <see cref="TileK"/> columns staged in shared memory, the inner dimension split across groups when the tiles are too
/// few for the machine); and <c>Tiled</c>, the same for any group size (a tile of <c>Group.DimX</c> outputs ×
/// <see cref="TileTokens"/> tokens; ILGPU's CPU accelerator runs it with 4-thread groups). Scalar twin:
/// <see cref="NaiveMatMul"/>.</summary>
internal static class GpuMatMul
{
    /// <summary>Largest group the kernels' shared arrays are sized for.</summary>
    public const int MaxGroup = 256;
    public const int TileTokens = 8;
    public const int TileK = 16;
    /// <summary>Outputs of one warp of <see cref="Rows"/>, and tokens per pass.</summary>
    public const int RowsPerWarp = 4;
    public const int RowTokens = 4;
    /// <summary>Most warps per group <see cref="Rows"/> sums across (its shared array's size).</summary>
    public const int MaxWarps = 16;
    /// <summary>Outputs and tokens of a <see cref="Tile64"/> tile; its group has <see cref="Tile64Threads"/> threads.</summary>
    public const int Tile = 64;
    public const int Tile64Threads = 256;
    private const int TilePad = Tile + 4;

    /// <summary>Grid: ceil(rows / (4 × warps per group / split)) groups. Each warp sums four outputs for four tokens a pass
    /// (every input pair it loads feeds four outputs, every weight pair four tokens); <paramref name="split"/> warps of a
    /// group share four outputs, each over every split-th stretch of the inner dimension, and add up through shared
    /// memory (more warps in flight for matrices of few rows). With <c>s.Pairs</c> weights and inputs load two at a time
    /// (one 4-byte load of bf16, one 8-byte load of two inputs).</summary>
    public static void Rows<TW>(MatMulOut y, ArrayView<float> x, TW w, MatMulShape s, int split) where TW : struct, IDeviceWeights
    {
        int warps = Group.DimX / Warp.WarpSize, warp = Warp.WarpIdx, lane = Warp.LaneIdx, ws = Warp.WarpSize;
        int part = warp % split, cols = s.Cols;
        int o0 = (Grid.IdxX * (warps / split) + warp / split) * RowsPerWarp;
        var red = SharedMemory.Allocate<float>(MaxWarps * RowsPerWarp * RowTokens);
        long r0 = Row(o0, s), r1 = Row(o0 + 1, s), r2 = Row(o0 + 2, s), r3 = Row(o0 + 3, s);
        int pairs = s.Pairs != 0 ? cols / 2 : 0;
        var x2 = x.Cast<ulong>();
        for (int t0 = 0; t0 < s.N; t0 += RowTokens)
        {
            int left = s.N - t0;
            long xt = (long)t0 * cols;
            var a0 = new Acc4();
            var a1 = new Acc4();
            var a2 = new Acc4();
            var a3 = new Acc4();
            for (int p = part * ws + lane; p < pairs; p += ws * split)
            {
                long k = 2L * p;
                Pair(x2, xt + k, out float x00, out float x01);
                float x10 = 0, x11 = 0, x20 = 0, x21 = 0, x30 = 0, x31 = 0;
                if (left > 1) Pair(x2, xt + cols + k, out x10, out x11);
                if (left > 2) Pair(x2, xt + 2L * cols + k, out x20, out x21);
                if (left > 3) Pair(x2, xt + 3L * cols + k, out x30, out x31);
                w.Pair(r0 + k, out float w0, out float v0);
                w.Pair(r1 + k, out float w1, out float v1);
                w.Pair(r2 + k, out float w2, out float v2);
                w.Pair(r3 + k, out float w3, out float v3);
                a0.Add2(w0, v0, x00, x01, x10, x11, x20, x21, x30, x31);
                a1.Add2(w1, v1, x00, x01, x10, x11, x20, x21, x30, x31);
                a2.Add2(w2, v2, x00, x01, x10, x11, x20, x21, x30, x31);
                a3.Add2(w3, v3, x00, x01, x10, x11, x20, x21, x30, x31);
            }
            for (int k = 2 * pairs + part * ws + lane; k < cols; k += ws * split)
            {
                long xi = xt + k;
                float x0 = x[xi], x1 = left > 1 ? x[xi + cols] : 0f, x2s = left > 2 ? x[xi + 2L * cols] : 0f, x3 = left > 3 ? x[xi + 3L * cols] : 0f;
                a0.Add(w.At(r0 + k), x0, x1, x2s, x3);
                a1.Add(w.At(r1 + k), x0, x1, x2s, x3);
                a2.Add(w.At(r2 + k), x0, x1, x2s, x3);
                a3.Add(w.At(r3 + k), x0, x1, x2s, x3);
            }
            a0.WarpSum(left);
            a1.WarpSum(left);
            a2.WarpSum(left);
            a3.WarpSum(left);
            if (split == 1)
            {
                if (lane == 0) Store4(a0, a1, a2, a3, y, s, o0, t0);
                continue;
            }
            // split warps: each warp's sixteen sums to shared memory; the first warp of each split adds them up
            const int Sums = RowsPerWarp * RowTokens;
            if (lane == 0)
            {
                a0.ToShared(red, warp * Sums);
                a1.ToShared(red, warp * Sums + RowTokens);
                a2.ToShared(red, warp * Sums + 2 * RowTokens);
                a3.ToShared(red, warp * Sums + 3 * RowTokens);
            }
            Group.Barrier();
            if (part == 0)
                for (int i = lane; i < Sums; i += ws)
                {
                    int o = o0 + i / RowTokens, t = t0 + i % RowTokens;
                    float sum = 0;
                    for (int j = 0; j < split; j++) sum += red[(warp + j) * Sums + i];
                    if (o < s.Rows && t < s.N) Put(y, s, t, o, sum);
                }
            Group.Barrier();
        }
    }

    /// <summary>Writes output o of token t where <paramref name="y"/> routes it, plus its bias: = v, or += v with
    /// <c>s.Accumulate</c> (the residual add of o_proj and down_proj).</summary>
    private static void Put(MatMulOut y, MatMulShape s, int t, int o, float v)
    {
        if (y.HasBias != 0) v += y.Bias[o];
        var dst = y.Y;
        long at = (long)t * y.Split1 + o;
        if (o >= y.Split2)
        {
            dst = y.Y3;
            at = (long)t * (s.Rows - y.Split2) + o - y.Split2;
        }
        else if (o >= y.Split1)
        {
            dst = y.Y2;
            at = (long)t * (y.Split2 - y.Split1) + o - y.Split1;
        }
        if (s.Accumulate != 0) dst[at] += v;
        else dst[at] = v;
    }

    /// <summary>Start of weight row o (a row past the matrix reads the last one; its sums are never stored).</summary>
    private static long Row(int o, MatMulShape s) => (long)(o < s.Rows ? o : s.Rows - 1) * s.Cols;

    private static void Pair(ArrayView<ulong> x2, long index, out float a, out float b)
    {
        ulong v = x2[index / 2];
        a = Interop.IntAsFloat((uint)v);
        b = Interop.IntAsFloat((uint)(v >> 32));
    }

    /// <summary>Grid: ceil(rows / 64) × ceil(n / 64) × split groups of <see cref="Tile64Threads"/> threads. Thread (tx, ty)
    /// = (tid % 16, tid / 16) sums outputs o0 + 4tx + i and tokens t0 + 4ty + j (i, j &lt; 4). With split &gt; 1 (a grid too
    /// small to fill the machine) group part p of a tile sums only the p-th stretch of the inner dimension into
    /// partial (split, n, rows), and <see cref="SumParts"/> adds the stretches up in a fixed order.</summary>
    public static void Tile64<TW>(MatMulOut y, ArrayView<float> x, TW w, MatMulShape s, int split, ArrayView<float> partial)
        where TW : struct, IDeviceWeights
    {
        int tid = Group.IdxX, tilesO = (s.Rows + Tile - 1) / Tile, tiles = tilesO * ((s.N + Tile - 1) / Tile);
        int tile = Grid.IdxX % tiles, part = Grid.IdxX / tiles;
        int o0 = tile % tilesO * Tile, t0 = tile / tilesO * Tile;
        int kPer = ((s.Cols + split - 1) / split + TileK - 1) / TileK * TileK;
        int kBegin = part * kPer, kEnd = XMath.Min(s.Cols, kBegin + kPer);
        int tx = tid % 16, ty = tid / 16;
        var ws = SharedMemory.Allocate<float>(TileK * TilePad); // [k][output]
        var xs = SharedMemory.Allocate<float>(TileK * TilePad); // [k][token]
        int lr = tid / 4, lk = tid % 4 * 4; // this thread loads row lr, columns lk..lk+3 of both tiles
        bool quads = s.Cols % 4 == 0;
        var a0 = new Acc4();
        var a1 = new Acc4();
        var a2 = new Acc4();
        var a3 = new Acc4();
        // the next tiles' values wait in registers while this tile's sums run
        LoadTiles(w, x, s, o0 + lr, t0 + lr, kBegin + lk, quads, out float w0, out float w1, out float w2, out float w3,
            out float x0, out float x1, out float x2, out float x3);
        for (int k0 = kBegin; k0 < kEnd; k0 += TileK)
        {
            ws[lk * TilePad + lr] = w0;
            ws[(lk + 1) * TilePad + lr] = w1;
            ws[(lk + 2) * TilePad + lr] = w2;
            ws[(lk + 3) * TilePad + lr] = w3;
            xs[lk * TilePad + lr] = x0;
            xs[(lk + 1) * TilePad + lr] = x1;
            xs[(lk + 2) * TilePad + lr] = x2;
            xs[(lk + 3) * TilePad + lr] = x3;
            Group.Barrier();
            if (k0 + TileK < kEnd)
                LoadTiles(w, x, s, o0 + lr, t0 + lr, k0 + TileK + lk, quads, out w0, out w1, out w2, out w3, out x0, out x1, out x2, out x3);
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
        if (split == 1) Store4(a0, a1, a2, a3, y, s, o, t);
        else Store4(a0, a1, a2, a3, MatMulOut.One(partial.SubView((long)part * s.N * s.Rows, (long)s.N * s.Rows), s.Rows), s with { Accumulate = 0 }, o, t);
    }

    /// <summary>Outputs o .. o + 3 (sums a0 .. a3) of tokens t .. t + 3.</summary>
    private static void Store4(Acc4 a0, Acc4 a1, Acc4 a2, Acc4 a3, MatMulOut y, MatMulShape s, int o, int t)
    {
        a0.Store(y, s, o, t);
        a1.Store(y, s, o + 1, t);
        a2.Store(y, s, o + 2, t);
        a3.Store(y, s, o + 3, t);
    }

    /// <summary>y (n, rows) = (or +=) the sum of partial (split, n, rows) over its first axis, in order. One thread per
    /// output.</summary>
    public static void SumParts(Index1D index, MatMulOut y, ArrayView<float> partial, MatMulShape s, int split)
    {
        long stride = (long)s.N * s.Rows;
        float sum = 0;
        for (int p = 0; p < split; p++) sum += partial[p * stride + index];
        Put(y, s, index / s.Rows, index % s.Rows, sum);
    }

    /// <summary>This thread's four weights of row ro and four inputs of token rt, columns k .. k + 3 (zeros outside).</summary>
    private static void LoadTiles<TW>(TW w, ArrayView<float> x, MatMulShape s, int ro, int rt, int k, bool quads,
        out float w0, out float w1, out float w2, out float w3, out float x0, out float x1, out float x2, out float x3)
        where TW : struct, IDeviceWeights
    {
        w0 = 0; w1 = 0; w2 = 0; w3 = 0;
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
        x0 = 0; x1 = 0; x2 = 0; x3 = 0;
        if (rt < s.N)
        {
            long xt = (long)rt * s.Cols + k;
            if (k < s.Cols) x0 = x[xt];
            if (k + 1 < s.Cols) x1 = x[xt + 1];
            if (k + 2 < s.Cols) x2 = x[xt + 2];
            if (k + 3 < s.Cols) x3 = x[xt + 3];
        }
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

        public void Add2(float wa, float wb, float x00, float x01, float x10, float x11, float x20, float x21, float x30, float x31)
        {
            _t0 += wa * x00 + wb * x01;
            _t1 += wa * x10 + wb * x11;
            _t2 += wa * x20 + wb * x21;
            _t3 += wa * x30 + wb * x31;
        }

        /// <summary>Each token's sum over the warp, in lane 0 (only the first <paramref name="left"/> tokens).</summary>
        public void WarpSum(int left)
        {
            _t0 = Sum(_t0);
            if (left > 1) _t1 = Sum(_t1);
            if (left > 2) _t2 = Sum(_t2);
            if (left > 3) _t3 = Sum(_t3);
        }

        private static float Sum(float v)
        {
            for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1) v += Warp.ShuffleDown(v, offset);
            return v;
        }

        public readonly void ToShared(ArrayView<float> red, int at)
        {
            red[at] = _t0;
            red[at + 1] = _t1;
            red[at + 2] = _t2;
            red[at + 3] = _t3;
        }

        public readonly void Store(MatMulOut y, MatMulShape s, int o, int t)
        {
            if (o >= s.Rows) return;
            if (t < s.N) Put(y, s, t, o, _t0);
            if (t + 1 < s.N) Put(y, s, t + 1, o, _t1);
            if (t + 2 < s.N) Put(y, s, t + 2, o, _t2);
            if (t + 3 < s.N) Put(y, s, t + 3, o, _t3);
        }
    }

    /// <summary>Grid: TilesO(g) × ceil(n / TileTokens) groups; group g threads.</summary>
    public static void Tiled<TW>(MatMulOut y, ArrayView<float> x, TW w, MatMulShape s) where TW : struct, IDeviceWeights
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

    private static void StoreColumn(MatMulOut y, MatMulShape s, int o, int t0,
        float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7)
    {
        if (o >= s.Rows) return;
        int left = s.N - t0;
        if (left > 0) Put(y, s, t0, o, a0);
        if (left > 1) Put(y, s, t0 + 1, o, a1);
        if (left > 2) Put(y, s, t0 + 2, o, a2);
        if (left > 3) Put(y, s, t0 + 3, o, a3);
        if (left > 4) Put(y, s, t0 + 4, o, a4);
        if (left > 5) Put(y, s, t0 + 5, o, a5);
        if (left > 6) Put(y, s, t0 + 6, o, a6);
        if (left > 7) Put(y, s, t0 + 7, o, a7);
    }
}

/// <summary>Read access to a device weight matrix as float32, whatever its storage: the matmul kernels are generic over
/// it, so one kernel body serves f32 and bf16 weights (ILGPU specialises each at load).</summary>
internal interface IDeviceWeights
{
    float At(long index);

    /// <summary>Elements index and index + 1 (index even).</summary>
    void Pair(long index, out float w0, out float w1);

    /// <summary>Elements index .. index + 3 (index a multiple of 4).</summary>
    void Quad(long index, out float w0, out float w1, out float w2, out float w3);
}

/// <summary>f32 weights.</summary>
internal readonly struct F32Weights(ArrayView<float> w) : IDeviceWeights
{
    private readonly ArrayView<float> _w = w;
    private readonly ArrayView<ulong> _pairs = w.Cast<ulong>();
    public float At(long index) => _w[index];

    public void Pair(long index, out float w0, out float w1)
    {
        ulong v = _pairs[index / 2];
        w0 = Interop.IntAsFloat((uint)v);
        w1 = Interop.IntAsFloat((uint)(v >> 32));
    }

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
    private readonly ArrayView<uint> _pairs = w.Cast<uint>();
    public float At(long index) => Interop.IntAsFloat((uint)_w[index] << 16);

    public void Pair(long index, out float w0, out float w1)
    {
        uint v = _pairs[index / 2];
        w0 = Interop.IntAsFloat(v << 16);
        w1 = Interop.IntAsFloat(v & 0xFFFF0000u);
    }

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

/// <summary>Where a matmul's outputs go: outputs [0, Split1) to Y (n, Split1), [Split1, Split2) to Y2 (n, Split2 - Split1),
/// [Split2, rows) to Y3 (n, rows - Split2), so one launch over stacked weights fills q, k and v (or gate and up); with
/// HasBias, Bias (rows) is added to each output.</summary>
internal readonly struct MatMulOut(ArrayView<float> y, ArrayView<float> y2, ArrayView<float> y3, ArrayView<float> bias,
    int split1, int split2, int hasBias)
{
    public readonly ArrayView<float> Y = y, Y2 = y2, Y3 = y3, Bias = bias;
    public readonly int Split1 = split1, Split2 = split2, HasBias = hasBias;

    /// <summary>Every output to y (n, rows).</summary>
    public static MatMulOut One(ArrayView<float> y, int rows) => new(y, y, y, y, rows, rows, 0);
}

/// <summary>Sizes of a device matmul: n token rows, W (Rows, Cols); Pairs = 1 when Cols is even and the input starts on
/// an 8-byte boundary (the decode kernel then loads two of each at a time); Accumulate = 1 adds the product to y.</summary>
internal readonly record struct MatMulShape(int N, int Rows, int Cols, int Pairs = 0, int Accumulate = 0);
