using System.Numerics.Tensors;

namespace Loom.Inference.Kernels;

/// <summary>Backward (and training-only forward) row kernels. Free functions, output first; each has a scalar twin in
/// <see cref="NaiveBackwardOps"/> that tests compare against.</summary>
public static class BackwardOps
{
    /// <summary>dx (+)= gradient through y = x / rms(x) · w for one row, given dy: dx = r·(w⊙dy) − x·r³/D·Σ(w⊙dy⊙x),
    /// r = 1/sqrt(mean(x²) + eps). <paramref name="accumulate"/>: add into dx instead of overwriting.
    /// <paramref name="scratch"/>: (D) room for w⊙dy.</summary>
    public static void RmsNorm(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps,
        Span<float> scratch, bool accumulate)
    {
        int d = x.Length;
        float ss = TensorPrimitives.Dot(x, x);
        float r = 1f / MathF.Sqrt(ss / d + eps);
        var wdy = scratch[..d];
        TensorPrimitives.Multiply(weight, dy, wdy);
        float dot = TensorPrimitives.Dot(wdy, x);
        float c = -dot * r * r * r / d;
        if (accumulate)
        {
            // dx += r·wdy + c·x
            TensorPrimitives.MultiplyAdd(wdy, r, dx, dx);
            TensorPrimitives.MultiplyAdd(x, c, dx, dx);
        }
        else
        {
            TensorPrimitives.Multiply(wdy, r, dx);
            TensorPrimitives.MultiplyAdd(x, c, dx, dx);
        }
    }

    /// <summary>Gradients through h = silu(g) · u: dg = dh·u·σ(g)·(1 + g·(1 − σ(g))), du = dh·g·σ(g). dg may alias dh.</summary>
    public static void SiluMul(Span<float> dg, Span<float> du, ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u)
    {
        Span<float> sig = stackalloc float[256];
        for (int i = 0; i < g.Length; i += sig.Length)
        {
            int n = Math.Min(sig.Length, g.Length - i);
            var s = sig[..n];
            TensorPrimitives.Sigmoid(g.Slice(i, n), s);
            for (int j = 0; j < n; j++)
            {
                float gj = g[i + j], sj = s[j], d = dh[i + j];
                du[i + j] = d * gj * sj;
                dg[i + j] = d * u[i + j] * sj * (1 + gj * (1 - sj));
            }
        }
    }

    /// <summary>The inverse rotation of <see cref="Ops.Rope"/> (its transpose): gradients of rotated vectors back to the
    /// unrotated ones, in place.</summary>
    public static void RopeInverse(Span<float> vec, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
        {
            var a = vec.Slice(h * headDim, half);
            var b = vec.Slice(h * headDim + half, half);
            for (int i = 0; i < half; i++)
            {
                float x0 = a[i], x1 = b[i];
                a[i] = x0 * cos[i] + x1 * sin[i];
                b[i] = x1 * cos[i] - x0 * sin[i];
            }
        }
    }

    /// <summary>Masked cross-entropy of one position: returns −log softmax(logits)[target], and writes
    /// dlogits = (softmax(logits) − onehot(target)) · scale. dlogits may be logits (overwritten).</summary>
    public static double CrossEntropy(Span<float> dlogits, ReadOnlySpan<float> logits, int target, float scale)
    {
        float at = logits[target];
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, dlogits);
        TensorPrimitives.Exp(dlogits, dlogits);
        double sum = 0;
        for (int i = 0; i < dlogits.Length; i += 1024)
            sum += TensorPrimitives.Sum(dlogits.Slice(i, Math.Min(1024, dlogits.Length - i)));
        double lse = max + Math.Log(sum);
        TensorPrimitives.Multiply(dlogits, (float)(scale / sum), dlogits);
        dlogits[target] -= scale;
        return lse - at;
    }
}

/// <summary>Scalar twins of <see cref="BackwardOps"/>, written for clarity (double accumulators).</summary>
public static class NaiveBackwardOps
{
    public static void RmsNorm(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, bool accumulate)
    {
        int d = x.Length;
        double ss = 0, dot = 0;
        for (int i = 0; i < d; i++) { ss += (double)x[i] * x[i]; dot += (double)weight[i] * dy[i] * x[i]; }
        double r = 1.0 / Math.Sqrt(ss / d + eps);
        for (int i = 0; i < d; i++)
        {
            double v = r * weight[i] * dy[i] - x[i] * r * r * r * dot / d;
            dx[i] = (float)(accumulate ? dx[i] + v : v);
        }
    }

    public static void SiluMul(Span<float> dg, Span<float> du, ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u)
    {
        for (int i = 0; i < g.Length; i++)
        {
            double s = 1 / (1 + Math.Exp(-g[i])), d = dh[i];
            du[i] = (float)(d * g[i] * s);
            dg[i] = (float)(d * u[i] * s * (1 + g[i] * (1 - s)));
        }
    }

    public static double CrossEntropy(Span<float> dlogits, ReadOnlySpan<float> logits, int target, float scale)
    {
        double at = logits[target];
        double max = double.NegativeInfinity;
        foreach (float v in logits) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        for (int i = 0; i < logits.Length; i++) dlogits[i] = (float)(Math.Exp(logits[i] - max) / sum * scale - (i == target ? scale : 0));
        return max + Math.Log(sum) - at;
    }
}
