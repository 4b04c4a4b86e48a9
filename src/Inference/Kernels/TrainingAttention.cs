namespace Loom.Inference.Kernels;

/// <summary>Causal GQA attention over one training row held in contiguous buffers (no KV cache), keeping the
/// probabilities for the backward pass. A row may pack several examples: token t sees keys [start[t], t].
/// Parallel over heads; every sum has a fixed order, so results do not depend on the number of cores.</summary>
/// <remarks>Shapes: q (T, heads·hd), k and v (T, kvHeads·hd), output (T, heads·hd), probs (heads, T, T) with row t
/// holding keys start[t]..t.</remarks>
public static unsafe class TrainingAttention
{
    /// <summary>Forward work (rows × keys × heads × head size) below which the heads run on the calling thread: a chunk's
    /// few rows cost less than waking the thread pool.</summary>
    internal const long SerialWork = 1L << 23;

    /// <summary>Rows [t0, t1) of the row's attention (t1 &lt; 0: T): a chunked forward computes the rows of each chunk once
    /// the keys and values of every row before t1 are in place; row t's outputs and probabilities are bitwise the same
    /// whichever rows are computed with it (buffers keep the whole row's geometry: T is the row's length).</summary>
    public static void Forward(Span<float> output, Span<float> probs, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<int> start, int T, int heads, int kvHeads, int hd, SimdLevel level, int t0 = 0, int t1 = -1)
    {
        if (t1 < 0) t1 = T;
        if (t0 < 0 || t1 > T || t0 > t1) throw new ArgumentOutOfRangeException(nameof(t0), $"rows [{t0}, {t1}) of a row of {T}");
        if (level == SimdLevel.Scalar)
        {
            NaiveTrainingAttention.Forward(output, probs, q, k, v, start, T, heads, kvHeads, hd, t0, t1);
            return;
        }
        if (level == SimdLevel.Vector512 && hd == 64)
        {
            TrainingAttention64.Forward(output, probs, q, k, v, start, T, heads, kvHeads, t0, t1);
            return;
        }
        int qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(hd);
        fixed (float* op = output) fixed (float* pp = probs) fixed (float* qp = q) fixed (float* kp = k) fixed (float* vp = v) fixed (int* sp = start)
        {
            nint oa = (nint)op, pa = (nint)pp, qa = (nint)qp, ka = (nint)kp, va = (nint)vp, sa = (nint)sp;
            int rowStart = t0, rowEnd = t1;
            void Head(int h)
            {
                float* o = (float*)oa, P = (float*)pa + (long)h * T * T, Q = (float*)qa, K = (float*)ka, V = (float*)va;
                int* st = (int*)sa;
                int g = h / groups;
                for (int t = rowStart; t < rowEnd; t++)
                {
                    float* qt = Q + (long)t * qDim + h * hd;
                    float* row = P + (long)t * T;
                    int s0 = st[t];
                    float max = float.NegativeInfinity;
                    for (int j = s0; j <= t; j++)
                    {
                        float s = VecOps.Dot(qt, K + (long)j * kvDim + g * hd, hd, level) * scale;
                        row[j] = s;
                        if (s > max) max = s;
                    }
                    float sum = 0;
                    for (int j = s0; j <= t; j++) { float e = MathF.Exp(row[j] - max); row[j] = e; sum += e; }
                    float inv = 1f / sum;
                    float* ot = o + (long)t * qDim + h * hd;
                    new Span<float>(ot, hd).Clear();
                    for (int j = s0; j <= t; j++)
                    {
                        row[j] *= inv;
                        VecOps.Axpy(ot, V + (long)j * kvDim + g * hd, row[j], hd, level);
                    }
                }
            }
            // a few rows (a chunk of a chunked forward): on this thread, as a worker would compute them
            if ((long)(rowEnd - rowStart) * rowEnd * heads * hd < SerialWork) for (int h = 0; h < heads; h++) Head(h);
            else Parallel.For(0, heads, Head);
        }
    }

    /// <summary>dq (T, heads·hd) = gradient of the queries; dk, dv (T, kvHeads·hd) = gradients of keys and values
    /// (summed over the heads of each group in head order). dkHeads, dvHeads: (heads, T, hd) scratch; rowScratch: (heads, T).
    /// The probabilities may be overwritten (with the score gradients, by the AVX-512 path for heads of 64): this is the
    /// last use of a layer's probabilities.</summary>
    public static void Backward(Span<float> dq, Span<float> dk, Span<float> dv, ReadOnlySpan<float> dOut, Span<float> probs,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> start, int T, int heads, int kvHeads, int hd,
        Span<float> dkHeads, Span<float> dvHeads, Span<float> rowScratch, SimdLevel level)
    {
        if (level == SimdLevel.Scalar)
        {
            NaiveTrainingAttention.Backward(dq, dk, dv, dOut, probs, q, k, v, start, T, heads, kvHeads, hd);
            return;
        }
        if (level == SimdLevel.Vector512 && hd == 64)
        {
            TrainingAttention64.Backward(dq, dk, dv, dOut, probs, q, k, v, start, T, heads, kvHeads, dkHeads, dvHeads);
            return;
        }
        int qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(hd);
        fixed (float* dqp = dq) fixed (float* dkp = dk) fixed (float* dvp = dv) fixed (float* dop = dOut) fixed (float* pp = probs)
        fixed (float* qp = q) fixed (float* kp = k) fixed (float* vp = v) fixed (int* sp = start)
        fixed (float* dkh = dkHeads) fixed (float* dvh = dvHeads) fixed (float* rs = rowScratch)
        {
            nint dqa = (nint)dqp, doa = (nint)dop, pa = (nint)pp, qa = (nint)qp, ka = (nint)kp, va = (nint)vp, sa = (nint)sp,
                dkha = (nint)dkh, dvha = (nint)dvh, rsa = (nint)rs;
            Parallel.For(0, heads, h =>
            {
                float* dQ = (float*)dqa, dO = (float*)doa, P = (float*)pa + (long)h * T * T, Q = (float*)qa, K = (float*)ka, V = (float*)va;
                float* dKh = (float*)dkha + (long)h * T * hd, dVh = (float*)dvha + (long)h * T * hd, dp = (float*)rsa + (long)h * T;
                int* st = (int*)sa;
                int g = h / groups;
                new Span<float>(dKh, T * hd).Clear();
                new Span<float>(dVh, T * hd).Clear();
                for (int t = 0; t < T; t++)
                {
                    float* row = P + (long)t * T;
                    float* dot = dO + (long)t * qDim + h * hd;
                    float* qt = Q + (long)t * qDim + h * hd;
                    float* dqt = dQ + (long)t * qDim + h * hd;
                    int s0 = st[t];
                    float d = 0;
                    for (int j = s0; j <= t; j++)
                    {
                        dp[j] = VecOps.Dot(dot, V + (long)j * kvDim + g * hd, hd, level);
                        d += row[j] * dp[j];
                    }
                    new Span<float>(dqt, hd).Clear();
                    for (int j = s0; j <= t; j++)
                    {
                        float ds = row[j] * (dp[j] - d) * scale;
                        VecOps.Axpy(dqt, K + (long)j * kvDim + g * hd, ds, hd, level);
                        VecOps.Axpy(dKh + (long)j * hd, qt, ds, hd, level);
                        VecOps.Axpy(dVh + (long)j * hd, dot, row[j], hd, level);
                    }
                }
            });
            SumGroups(dk, dkHeads, T, heads, kvHeads, hd);
            SumGroups(dv, dvHeads, T, heads, kvHeads, hd);
        }
    }

    /// <summary>d (T, kvHeads·hd) = Σ over the heads of each group, in head order, of perHead (heads, T, hd).</summary>
    internal static void SumGroups(Span<float> d, ReadOnlySpan<float> perHead, int T, int heads, int kvHeads, int hd)
    {
        int groups = heads / kvHeads, kvDim = kvHeads * hd;
        for (int t = 0; t < T; t++)
            for (int g = 0; g < kvHeads; g++)
            {
                var dst = d.Slice(t * kvDim + g * hd, hd);
                perHead.Slice((g * groups * T + t) * hd, hd).CopyTo(dst);
                for (int i = 1; i < groups; i++)
                    System.Numerics.Tensors.TensorPrimitives.Add(dst, perHead.Slice(((g * groups + i) * T + t) * hd, hd), dst);
            }
    }
}

/// <summary>The scalar twin of <see cref="TrainingAttention"/> (double accumulators, one head and token at a time).</summary>
public static class NaiveTrainingAttention
{
    public static void Forward(Span<float> output, Span<float> probs, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<int> start, int T, int heads, int kvHeads, int hd, int t0 = 0, int t1 = -1)
    {
        if (t1 < 0) t1 = T;
        int qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads;
        double scale = 1 / Math.Sqrt(hd);
        var s = new double[T];
        for (int h = 0; h < heads; h++)
            for (int t = t0; t < t1; t++)
            {
                int g = h / groups;
                double max = double.NegativeInfinity, sum = 0;
                for (int j = start[t]; j <= t; j++)
                {
                    double a = 0;
                    for (int i = 0; i < hd; i++) a += (double)q[t * qDim + h * hd + i] * k[j * kvDim + g * hd + i];
                    s[j] = a * scale;
                    max = Math.Max(max, s[j]);
                }
                for (int j = start[t]; j <= t; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int i = 0; i < hd; i++)
                {
                    double o = 0;
                    for (int j = start[t]; j <= t; j++) o += s[j] / sum * v[j * kvDim + g * hd + i];
                    output[t * qDim + h * hd + i] = (float)o;
                }
                for (int j = start[t]; j <= t; j++) probs[(h * T + t) * T + j] = (float)(s[j] / sum);
            }
    }

    public static void Backward(Span<float> dq, Span<float> dk, Span<float> dv, ReadOnlySpan<float> dOut, ReadOnlySpan<float> probs,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> start, int T, int heads, int kvHeads, int hd)
    {
        int qDim = heads * hd, kvDim = kvHeads * hd, groups = heads / kvHeads;
        double scale = 1 / Math.Sqrt(hd);
        var dk64 = new double[T * kvDim];
        var dv64 = new double[T * kvDim];
        var dp = new double[T];
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < T; t++)
            {
                int g = h / groups;
                double d = 0;
                for (int j = start[t]; j <= t; j++)
                {
                    double a = 0;
                    for (int i = 0; i < hd; i++) a += (double)dOut[t * qDim + h * hd + i] * v[j * kvDim + g * hd + i];
                    dp[j] = a;
                    d += probs[(h * T + t) * T + j] * a;
                }
                for (int i = 0; i < hd; i++)
                {
                    double acc = 0;
                    for (int j = start[t]; j <= t; j++)
                    {
                        double p = probs[(h * T + t) * T + j], ds = p * (dp[j] - d) * scale;
                        acc += ds * k[j * kvDim + g * hd + i];
                        dk64[j * kvDim + g * hd + i] += ds * q[t * qDim + h * hd + i];
                        dv64[j * kvDim + g * hd + i] += p * dOut[t * qDim + h * hd + i];
                    }
                    dq[t * qDim + h * hd + i] = (float)acc;
                }
            }
        for (int i = 0; i < T * kvDim; i++) { dk[i] = (float)dk64[i]; dv[i] = (float)dv64[i]; }
    }
}
