using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Loom.Inference.Kernels;

/// <summary>Input rows quantized for the Q8 matmul as llama.cpp's q8_0 activations are: per block of 32 columns,
/// scale = max |x| / 127 and value = round(x / scale) (to even), plus the block's sum of values (the AVX-VNNI kernel
/// takes 128 · sum off its u8×s8 dot products). The buffers belong to the calling thread and are reused.</summary>
internal unsafe struct Q8Input
{
    public sbyte* Values;   // (n, blocks·32), zero past the last column
    public short* Values16; // the same values as 16-bit integers, for the 512-bit dot product; null unless asked for
    public float* Scales;   // (n, blocks)
    public int* Sums;       // (n, blocks)
    public int Blocks;

    [ThreadStatic] private static sbyte[]? _values;
    [ThreadStatic] private static float[]? _scales;
    [ThreadStatic] private static int[]? _sums;
    [ThreadStatic] private static short[]? _values16;

    /// <summary>Quantizes x (n, cols) into this thread's buffers (valid until its next call); <paramref name="wide"/>:
    /// also as 16-bit integers (<see cref="Values16"/>).</summary>
    public static Q8Input Quantize(float* x, int n, int cols, bool wide = false)
    {
        var q = Quantize(x, n, cols);
        if (!wide) return q;
        long count = (long)n * q.Blocks * Q8Layout.Block;
        if (_values16 == null || _values16.Length < count) _values16 = GC.AllocateArray<short>((int)Math.Max(count, 256 * Q8Layout.Block), pinned: true);
        fixed (short* v16 = _values16)
        {
            long i = 0;
            if (Avx512BW.IsSupported)
                for (; i + 32 <= count; i += 32) Avx512BW.ConvertToVector512Int16(Vector256.Load(q.Values + i)).Store(v16 + i);
            for (; i < count; i++) v16[i] = q.Values[i];
            q.Values16 = v16;   // pinned array: the address stays valid
        }
        return q;
    }

    private static Q8Input Quantize(float* x, int n, int cols)
    {
        int blocks = Q8Layout.BlocksPerRow(cols);
        int size = n * blocks;
        if (_scales == null || _scales.Length < size)
        {
            int grown = Math.Max(size, 256);
            _values = GC.AllocateArray<sbyte>(grown * Q8Layout.Block, pinned: true);
            _scales = GC.AllocateArray<float>(grown, pinned: true);
            _sums = GC.AllocateArray<int>(grown, pinned: true);
        }
        var q = new Q8Input { Blocks = blocks };
        fixed (sbyte* v = _values)
        fixed (float* s = _scales)
        fixed (int* c = _sums)
        {
            for (int b = 0; b < n; b++) Row(x + (long)b * cols, cols, v + (long)b * blocks * Q8Layout.Block, s + b * blocks, c + b * blocks);
            q.Values = v; q.Scales = s; q.Sums = c;   // pinned arrays: the addresses stay valid
        }
        return q;
    }

    /// <summary>One row: full blocks with AVX-512 or AVX2 where there is one, the same arithmetic as
    /// <see cref="Q8Layout.QuantizeBlock"/> (max is exact in any order, the round is to even in all, a value past ±127
    /// converts to the same clamped integer), so the result is bitwise that of the scalar path.</summary>
    public static void Row(float* x, int cols, sbyte* values, float* scales, int* sums) => Row(x, cols, values, scales, sums, Simd.Best);

    /// <summary><see cref="Row(float*, int, sbyte*, float*, int*)"/> at most at the given width (tests run each one).</summary>
    internal static void Row(float* x, int cols, sbyte* values, float* scales, int* sums, SimdLevel level)
    {
        bool wide = level == SimdLevel.Vector512 && Avx512F.IsSupported;
        bool narrow = level != SimdLevel.Scalar && Vector256.IsHardwareAccelerated;
        Span<sbyte> tmp = stackalloc sbyte[Q8Layout.Block];
        for (int b = 0, k = 0; k < cols; b++, k += Q8Layout.Block)
        {
            sbyte* q = values + k;
            if (k + Q8Layout.Block <= cols && wide)
            {
                var a = Vector512.Load(x + k);
                var c = Vector512.Load(x + k + 16);
                var m = Vector512.Max(Vector512.Abs(a), Vector512.Abs(c));
                var m8 = Vector256.Max(m.GetLower(), m.GetUpper());
                var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
                float amax = MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
                float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
                var lo = Vector512.Create(-127);
                var hi = Vector512.Create(127);
                var qa = Vector512.Clamp(Vector512.ConvertToInt32(Vector512.Round(a * id)), lo, hi);
                var qc = Vector512.Clamp(Vector512.ConvertToInt32(Vector512.Round(c * id)), lo, hi);
                Avx512F.ConvertToVector128SByte(qa).Store(q);
                Avx512F.ConvertToVector128SByte(qc).Store(q + 16);
                scales[b] = d;
                sums[b] = Vector512.Sum(qa + qc);
                continue;
            }
            if (k + Q8Layout.Block <= cols && narrow)
            {
                scales[b] = Block256(x + k, q, out sums[b]);
                continue;
            }
            int len = Math.Min(Q8Layout.Block, cols - k);
            scales[b] = Q8Layout.QuantizeBlock(new ReadOnlySpan<float>(x + k, len), tmp);
            int sum = 0;
            for (int j = 0; j < Q8Layout.Block; j++)
            {
                q[j] = j < len ? tmp[j] : (sbyte)0;
                sum += q[j];
            }
            sums[b] = sum;
        }
    }

    /// <summary>One full block at 256 bits: its 32 values into q, their sum, and the scale returned.</summary>
    private static float Block256(float* x, sbyte* q, out int sum)
    {
        var v0 = Vector256.Load(x);
        var v1 = Vector256.Load(x + 8);
        var v2 = Vector256.Load(x + 16);
        var v3 = Vector256.Load(x + 24);
        var m8 = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
        var m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        float amax = MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
        float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
        var s = Vector256.Create(id);
        var lo = Vector256.Create(-127);
        var hi = Vector256.Create(127);
        var q0 = Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v0 * s)), lo, hi);
        var q1 = Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v1 * s)), lo, hi);
        var q2 = Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v2 * s)), lo, hi);
        var q3 = Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v3 * s)), lo, hi);
        Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).Store(q);
        sum = Vector256.Sum(q0 + q1 + q2 + q3);
        return d;
    }
}
