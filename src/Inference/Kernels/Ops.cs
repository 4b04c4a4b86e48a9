using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Loom.Inference.Kernels;

/// <summary>Element-wise and row kernels. Free functions, output first; each has a scalar twin in <see cref="NaiveOps"/>.</summary>
public static class Ops
{
    /// <summary>output = x / sqrt(mean(x²) + eps) · weight, for one row.</summary>
    public static void RmsNorm(Span<float> output, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps)
    {
        float ss = TensorPrimitives.Dot(x, x);
        float scale = 1f / MathF.Sqrt(ss / x.Length + eps);
        TensorPrimitives.Multiply(x, scale, output);
        TensorPrimitives.Multiply(output, weight, output);
    }

    /// <summary>Rotates each head of <paramref name="vec"/> (heads × headDim) in place, HF "rotate half" layout:
    /// element i pairs with i + headDim/2. cos/sin: (headDim/2) values for this position.</summary>
    public static void Rope(Span<float> vec, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        if (vec.Length < heads * headDim || cos.Length < half || sin.Length < half)
            throw new ArgumentException($"RoPE of {heads} heads of {headDim} needs {heads * headDim} values and {half} cos/sin");
        for (int h = 0; h < heads; h++)
        {
            var a = vec.Slice(h * headDim, half);
            var b = vec.Slice(h * headDim + half, half);
            int i = 0;
            // products and differences rounded one by one, as the scalar lines below do (no fused multiply-add), so every
            // width gives the same bits
            if (Vector512.IsHardwareAccelerated)
                for (; i + 16 <= half; i += 16)
                {
                    var x0 = Vector512.Create(a.Slice(i, 16)); var x1 = Vector512.Create(b.Slice(i, 16));
                    var c = Vector512.Create(cos.Slice(i, 16)); var s = Vector512.Create(sin.Slice(i, 16));
                    (x0 * c - x1 * s).CopyTo(a.Slice(i, 16));
                    (x1 * c + x0 * s).CopyTo(b.Slice(i, 16));
                }
            if (Vector256.IsHardwareAccelerated)
                for (; i + 8 <= half; i += 8)
                {
                    var x0 = Vector256.Create(a.Slice(i, 8)); var x1 = Vector256.Create(b.Slice(i, 8));
                    var c = Vector256.Create(cos.Slice(i, 8)); var s = Vector256.Create(sin.Slice(i, 8));
                    (x0 * c - x1 * s).CopyTo(a.Slice(i, 8));
                    (x1 * c + x0 * s).CopyTo(b.Slice(i, 8));
                }
            for (; i < half; i++)
            {
                float x0 = a[i], x1 = b[i];
                a[i] = x0 * cos[i] - x1 * sin[i];
                b[i] = x1 * cos[i] + x0 * sin[i];
            }
        }
    }

    /// <summary>In-place softmax (max-subtracted).</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }

    /// <summary>output = silu(gate) · up, silu(g) = g · sigmoid(g). output may be the same memory as gate or up.</summary>
    public static void SiluMul(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        Span<float> sig = stackalloc float[256];
        for (int i = 0; i < gate.Length; i += sig.Length)
        {
            int n = Math.Min(sig.Length, gate.Length - i);
            var g = gate.Slice(i, n);
            var s = sig[..n];
            TensorPrimitives.Sigmoid(g, s);
            TensorPrimitives.Multiply(s, g, s);
            TensorPrimitives.Multiply(s, up.Slice(i, n), output.Slice(i, n));
        }
    }

    /// <summary>x += y.</summary>
    public static void AddInPlace(Span<float> x, ReadOnlySpan<float> y) => TensorPrimitives.Add(x, y, x);

    /// <summary>Index of the largest value; the first one on ties; NaN is never chosen unless all are NaN.</summary>
    public static int Argmax(ReadOnlySpan<float> x)
    {
        int best = 0;
        float bv = float.NegativeInfinity;
        bool found = false;
        for (int i = 0; i < x.Length; i++)
        {
            if (x[i] > bv || (!found && !float.IsNaN(x[i]))) { bv = x[i]; best = i; found = true; }
        }
        return best;
    }

    /// <summary>Writes the indices of the k largest values, largest first (ties: lower index first). Returns the count written.</summary>
    public static int TopK(Span<int> indices, ReadOnlySpan<float> x, int k)
    {
        k = Math.Min(k, Math.Min(indices.Length, x.Length));
        int count = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            if (float.IsNaN(v)) continue;
            if (count == k && !(v > x[indices[count - 1]])) continue;
            int pos = count < k ? count++ : k - 1;
            while (pos > 0 && v > x[indices[pos - 1]])
            {
                indices[pos] = indices[pos - 1];
                pos--;
            }
            indices[pos] = i;
        }
        return count;
    }
}

/// <summary>Scalar twins of <see cref="Ops"/>, written for clarity; tests compare the two.</summary>
public static class NaiveOps
{
    public static void RmsNorm(Span<float> output, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps)
    {
        double ss = 0;
        for (int i = 0; i < x.Length; i++) ss += (double)x[i] * x[i];
        double scale = 1.0 / Math.Sqrt(ss / x.Length + eps);
        for (int i = 0; i < x.Length; i++) output[i] = (float)(x[i] * scale * weight[i]);
    }

    public static void Softmax(Span<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (float v in x) max = Math.Max(max, v);
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - max);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Math.Exp(x[i] - max) / sum);
    }

    public static void SiluMul(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++) output[i] = (float)(gate[i] / (1 + Math.Exp(-gate[i])) * up[i]);
    }

    public static int Argmax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
