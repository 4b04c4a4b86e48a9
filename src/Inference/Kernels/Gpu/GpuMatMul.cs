using ILGPU;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code of y (n, rows) = x (n, cols) · Wᵀ with W row-major (rows, cols), in f32 or bf16 (ushort bit
/// patterns widened by a shift, as <see cref="WeightMatrix"/> does). Two shapes: <c>Rows</c> for decode (few token rows:
/// one group per output, the group's threads stride over the inner dimension and reduce in shared memory, four tokens
/// per pass so each weight read feeds four), and <c>Tiled</c> for prefill and large batches (a group computes a tile
/// of <c>Group.DimX</c> outputs × <see cref="TileTokens"/> tokens; weight and input tiles of <see cref="TileK"/> columns
/// are staged in shared memory, each thread keeps its eight sums in registers). Scalar twin: <see cref="NaiveMatMul"/>.</summary>
internal static class GpuMatMul
{
    /// <summary>Largest group the kernels' shared arrays are sized for.</summary>
    public const int MaxGroup = 256;
    public const int TileTokens = 8;
    public const int TileK = 16;

    /// <summary>Grid: rows groups.</summary>
    public static void Rows<TW>(ArrayView<float> y, ArrayView<float> x, TW w, MatMulShape s) where TW : struct, IDeviceWeights
    {
        int o = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        var red = SharedMemory.Allocate<float>(4 * MaxGroup);
        long wRow = (long)o * s.Cols;
        for (int t0 = 0; t0 < s.N; t0 += 4)
        {
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            long x0 = (long)t0 * s.Cols;
            int left = s.N - t0;
            for (int k = tid; k < s.Cols; k += g)
            {
                float wv = w.At(wRow + k);
                a0 += wv * x[x0 + k];
                if (left > 1) a1 += wv * x[x0 + s.Cols + k];
                if (left > 2) a2 += wv * x[x0 + 2L * s.Cols + k];
                if (left > 3) a3 += wv * x[x0 + 3L * s.Cols + k];
            }
            ReduceStore4(y, red, a0, a1, a2, a3, t0, left, o, s.Rows, tid, g);
        }
    }

    /// <summary>Tree sum of four per-thread partials over the group (g a power of two); thread 0 writes the outputs.</summary>
    private static void ReduceStore4(ArrayView<float> y, ArrayView<float> red, float a0, float a1, float a2, float a3,
        int t0, int left, int o, int rows, int tid, int g)
    {
        red[tid] = a0;
        red[g + tid] = a1;
        red[2 * g + tid] = a2;
        red[3 * g + tid] = a3;
        Group.Barrier();
        for (int half = g / 2; half > 0; half >>= 1)
        {
            if (tid < half)
            {
                red[tid] += red[tid + half];
                red[g + tid] += red[g + tid + half];
                red[2 * g + tid] += red[2 * g + tid + half];
                red[3 * g + tid] += red[3 * g + tid + half];
            }
            Group.Barrier();
        }
        if (tid == 0)
        {
            y[(long)t0 * rows + o] = red[0];
            if (left > 1) y[(long)(t0 + 1) * rows + o] = red[g];
            if (left > 2) y[(long)(t0 + 2) * rows + o] = red[2 * g];
            if (left > 3) y[(long)(t0 + 3) * rows + o] = red[3 * g];
        }
        Group.Barrier();
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
        StoreTile(y, s, o0 + tid, t0, a0, a1, a2, a3, a4, a5, a6, a7);
    }

    private static void LoadInputTile(ArrayView<float> xs, ArrayView<float> x, MatMulShape s, int t0, int k0, int tid, int g)
    {
        for (int i = tid; i < TileTokens * TileK; i += g)
        {
            int t = t0 + i / TileK, k = k0 + i % TileK;
            xs[i] = t < s.N && k < s.Cols ? x[(long)t * s.Cols + k] : 0f;
        }
    }

    private static void StoreTile(ArrayView<float> y, MatMulShape s, int o, int t0,
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
}

/// <summary>f32 weights.</summary>
internal readonly struct F32Weights(ArrayView<float> w) : IDeviceWeights
{
    private readonly ArrayView<float> _w = w;
    public float At(long index) => _w[index];
}

/// <summary>bf16 weights (bit patterns), widened by a shift as <see cref="WeightMatrix"/> does.</summary>
internal readonly struct BF16Weights(ArrayView<ushort> w) : IDeviceWeights
{
    private readonly ArrayView<ushort> _w = w;
    public float At(long index) => Interop.IntAsFloat((uint)_w[index] << 16);
}

/// <summary>Sizes of a device matmul: n token rows, W (Rows, Cols).</summary>
internal readonly record struct MatMulShape(int N, int Rows, int Cols);
