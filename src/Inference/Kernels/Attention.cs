using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>Causal attention of one query head over a sequence's KV cache, read block by block
/// through <see cref="IKvCache"/> (so a paged pool can stand behind it).</summary>
public static unsafe class Attention
{
    /// <summary>output (headDim) = Σ_j softmax_j(q·k_j / sqrt(headDim)) v_j over positions j in [0, length).
    /// scores: scratch of at least <paramref name="length"/> floats.</summary>
    public static void Head(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead,
        int length, Span<float> scores, SimdLevel level)
    {
        int headDim = q.Length;
        int bs = cache.BlockSize;
        int kvDim = cache.KvDim;
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* qp = q)
        fixed (float* op = output)
        fixed (float* sp = scores)
        {
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* kb = cache.Keys(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        sp[j0 + r] = Dot(qp, kb + r * kvDim + kvHead * headDim, headDim, level) * scale;
                }
            }
            Ops.Softmax(scores[..length]);
            new Span<float>(op, headDim).Clear();
            for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
            {
                fixed (float* vb = cache.Values(layer, block))
                {
                    int n = Math.Min(bs, length - j0);
                    for (int r = 0; r < n; r++)
                        Axpy(op, vb + r * kvDim + kvHead * headDim, sp[j0 + r], headDim, level);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n, SimdLevel level)
    {
        int k = 0;
        float s = 0;
        if (level == SimdLevel.Vector512 && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; k + 16 <= n; k += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), Vector512.Load(b + k), acc);
            s = Vector512.Sum(acc);
        }
        else if (level != SimdLevel.Scalar && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= n; k += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), Vector256.Load(b + k), acc);
            s = Vector256.Sum(acc);
        }
        for (; k < n; k++) s += a[k] * b[k];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float* y, float* x, float a, int n, SimdLevel level)
    {
        int k = 0;
        if (level == SimdLevel.Vector512)
        {
            var av = Vector512.Create(a);
            for (; k + 16 <= n; k += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + k), av, Vector512.Load(y + k)).Store(y + k);
        }
        else if (level != SimdLevel.Scalar)
        {
            var av = Vector256.Create(a);
            for (; k + 8 <= n; k += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + k), av, Vector256.Load(y + k)).Store(y + k);
        }
        for (; k < n; k++) y[k] += a * x[k];
    }

    /// <summary>Scalar twin: the same equation with explicit loops and double accumulation.</summary>
    public static void NaiveHead(Span<float> output, ReadOnlySpan<float> q, IKvCache cache, int layer, int kvHead, int length)
    {
        int headDim = q.Length;
        var p = new double[length];
        for (int j = 0; j < length; j++)
        {
            var k = cache.Keys(layer, j / cache.BlockSize).Slice((j % cache.BlockSize) * cache.KvDim + kvHead * headDim, headDim);
            double s = 0;
            for (int i = 0; i < headDim; i++) s += (double)q[i] * k[i];
            p[j] = s / Math.Sqrt(headDim);
        }
        double max = p.Max(), sum = 0;
        for (int j = 0; j < length; j++) sum += p[j] = Math.Exp(p[j] - max);
        for (int i = 0; i < headDim; i++)
        {
            double o = 0;
            for (int j = 0; j < length; j++)
                o += p[j] / sum * cache.Values(layer, j / cache.BlockSize)[(j % cache.BlockSize) * cache.KvDim + kvHead * headDim + i];
            output[i] = (float)o;
        }
    }
}
