using ILGPU;
using Loom.Inference.Sampling;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code of the sampler: one group per row of logits, the host <see cref="Sampler"/>'s steps in its order
/// (its scalar twin): argmax for greedy rows; else top-k (<see cref="GpuSelect.TopK"/>) or top-p
/// (<see cref="GpuSelect.Nucleus"/>) candidates, softmax(x / T) over them, top-p after top-k, min-p, and the pick with the
/// row's uniform draw; then the chosen token's log-softmax and the most likely alternatives when asked. Sums are in
/// double as the host's; the scans that walk candidates in order give each thread one contiguous range.</summary>
internal static class GpuSampling
{
    private const int Top = DeviceSampling.MaxTopLogprobs;

    /// <summary>results (rows) and topIds/topLogprobs (rows, 20) from logits (rows, vocab) and rows (rows);
    /// candKey/candIdx (rows, MaxCandidates) and weights (rows, vocab) are scratch. Grid: rows groups.</summary>
    public static void Sample(ArrayView<DeviceSample> results, ArrayView<int> topIds, ArrayView<float> topLogprobs,
        ArrayView<float> logits, ArrayView<DeviceSampleRow> rows, ArrayView<uint> candKey, ArrayView<int> candIdx,
        ArrayView<float> weights, int vocab)
    {
        int row = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        var f = SharedMemory.Allocate<float>(GpuMatMul.MaxGroup);
        var d = SharedMemory.Allocate<double>(GpuMatMul.MaxGroup);
        var ia = SharedMemory.Allocate<int>(GpuMatMul.MaxGroup);
        var ib = SharedMemory.Allocate<int>(GpuMatMul.MaxGroup);
        var u = SharedMemory.Allocate<ulong>(GpuMatMul.MaxGroup);
        var p = rows[row];
        if (p.Mode != DeviceSampleMode.Greedy && p.Mode != DeviceSampleMode.Random) return; // (the whole group)
        var x = logits.SubView((long)row * vocab, vocab);
        var key = candKey.SubView((long)row * DeviceSampling.MaxCandidates, DeviceSampling.MaxCandidates);
        var idx = candIdx.SubView((long)row * DeviceSampling.MaxCandidates, DeviceSampling.MaxCandidates);

        // the most likely token (lowest id on ties) and how many logits are numbers
        ulong best = 0;
        int count = 0;
        for (int i = tid; i < vocab; i += g)
        {
            float v = x[i];
            if (float.IsNaN(v)) continue;
            count++;
            ulong r = GpuSelect.Rank(v, i);
            if (r > best) best = r;
        }
        best = GpuReduce.MaxULong(u, best, tid, g);
        count = GpuReduce.SumInt(ia, count, tid, g);
        int argmax = count == 0 ? 0 : GpuSelect.IndexOfRank(best);
        float max = count == 0 ? float.NegativeInfinity : GpuSelect.FromKey((uint)(best >> 32));

        int token = argmax, needsHost = 0;
        if (p.Mode == DeviceSampleMode.Random && count > 0)
        {
            float invT = 1f / p.Temperature;
            int n = -1; // -1: every token is a candidate, in token order; else key/idx [0, n), most likely first
            bool nucleus = false;
            if (p.TopK > 0 && p.TopK < vocab)
            {
                n = p.TopK < count ? p.TopK : count;
                if (n > DeviceSampling.MaxCandidates) n = DeviceSampling.MaxCandidates; // (the host routes such rows to itself)
                GpuSelect.TopK(key, idx, x, vocab, n, ia, ib, tid, g);
            }
            else if (p.TopP < 1)
            {
                nucleus = true;
                var w = weights.SubView((long)row * vocab, vocab);
                double total = 0;
                for (int i = tid; i < vocab; i += g)
                {
                    float v = x[i];
                    float e = !float.IsNaN(v) ? Exp(((v - max) * invT)) : 0f;
                    w[i] = e;
                    total += e;
                }
                total = GpuReduce.SumDouble(d, total, tid, g);
                n = GpuSelect.Nucleus(key, idx, x, w, vocab, p.TopP * total, d, ia, ib, f, tid, g);
                if (n > DeviceSampling.MaxCandidates) needsHost = 1;
            }
            if (needsHost == 0) token = Pick(x, idx, n < 0 ? vocab : n, n < 0, invT, p, nucleus, f, d, ia, tid, g);
        }

        float logprob = 0;
        int topCount = 0;
        if (p.TopLogprobs >= 0 && needsHost == 0)
        {
            // log-softmax of the raw logits, as Sampler.Logprobs
            double z = 0;
            for (int i = tid; i < vocab; i += g) z += Exp64(x[i] - max);
            z = GpuReduce.SumDouble(d, z, tid, g);
            float logZ = max + (float)Log64(z);
            logprob = x[token] - logZ;
            topCount = p.TopLogprobs < count ? p.TopLogprobs : count;
            ulong previous = ulong.MaxValue;
            for (int q = 0; q < topCount; q++)
            {
                ulong next = 0;
                for (int i = tid; i < vocab; i += g)
                {
                    float v = x[i];
                    if (float.IsNaN(v)) continue;
                    ulong r = GpuSelect.Rank(v, i);
                    if (r < previous && r > next) next = r;
                }
                next = GpuReduce.MaxULong(u, next, tid, g);
                if (tid == 0)
                {
                    int id = GpuSelect.IndexOfRank(next);
                    topIds[row * Top + q] = id;
                    topLogprobs[row * Top + q] = x[id] - logZ;
                }
                previous = next;
            }
        }
        if (tid == 0) results[row] = new DeviceSample(token, logprob, needsHost, topCount);
    }

    /// <summary>Softmax(x / T) over the candidates, top-p on their sorted prefix (when it did not pick them), min-p, then
    /// the first candidate whose running probability passes draw × their total (<see cref="Sampler"/>'s Choose).</summary>
    private static int Pick(ArrayView<float> x, ArrayView<int> idx, int n, bool all, float invT, DeviceSampleRow p, bool nucleus,
        ArrayView<float> f, ArrayView<double> d, ArrayView<int> ia, int tid, int g)
    {
        int chunk = (n + g - 1) / g, lo = tid * chunk, hi = lo + chunk;
        if (lo > n) lo = n;
        if (hi > n) hi = n;
        float m = float.NegativeInfinity;
        for (int j = lo; j < hi; j++)
        {
            float v = x[all ? j : idx[j]];
            if (v > m) m = v;
        }
        m = GpuReduce.Max(f, m, tid, g);
        double sum = 0;
        for (int j = lo; j < hi; j++)
        {
            float v = x[all ? j : idx[j]];
            if (!float.IsNaN(v)) sum += Exp((v - m) * invT);
        }
        sum = GpuReduce.SumDouble(d, sum, tid, g);

        // top-p on the sorted candidates: the prefix whose probability reaches p
        int limit = n;
        if (p.TopP < 1 && !nucleus)
        {
            double part = 0;
            for (int j = lo; j < hi; j++) part += Prob(x, idx, j, all, m, invT, sum);
            double cum = GpuReduce.ExclusiveScan(d, part, tid, g);
            int first = int.MaxValue;
            for (int j = lo; j < hi; j++)
            {
                cum += Prob(x, idx, j, all, m, invT, sum);
                if (cum >= p.TopP) { first = j; break; }
            }
            first = GpuReduce.MinInt(ia, first, tid, g);
            if (first != int.MaxValue) limit = first + 1;
        }
        // min-p: relative to the most likely remaining candidate
        float threshold = 0;
        if (p.MinP > 0)
        {
            float top = 0;
            for (int j = lo; j < hi && j < limit; j++)
            {
                float q = Prob(x, idx, j, all, m, invT, sum);
                if (q > top) top = q;
            }
            threshold = p.MinP * GpuReduce.Max(f, top, tid, g);
        }

        double mine = 0;
        for (int j = lo; j < hi && j < limit; j++)
        {
            float q = Prob(x, idx, j, all, m, invT, sum);
            if (Kept(x, idx, j, all, q, threshold)) mine += q;
        }
        double total = GpuReduce.SumDouble(d, mine, tid, g);
        double r = p.Draw * total;
        double acc = GpuReduce.ExclusiveScan(d, mine, tid, g);
        int pick = int.MaxValue, last = -1, firstKept = int.MaxValue;
        for (int j = lo; j < hi && j < limit; j++)
        {
            float q = Prob(x, idx, j, all, m, invT, sum);
            if (!Kept(x, idx, j, all, q, threshold)) continue;
            if (firstKept == int.MaxValue) firstKept = j;
            if (q > 0) last = j;
            acc += q;
            if (pick == int.MaxValue && r < acc) pick = j;
        }
        pick = GpuReduce.MinInt(ia, pick, tid, g);
        last = GpuReduce.MaxInt(ia, last, tid, g);
        firstKept = GpuReduce.MinInt(ia, firstKept, tid, g);
        // rounding left r at the very end: the last candidate with mass
        int chosen = pick != int.MaxValue ? pick : last >= 0 ? last : firstKept;
        return all ? chosen : idx[chosen];
    }

    private static bool Kept(ArrayView<float> x, ArrayView<int> idx, int j, bool all, float q, float threshold)
    {
        float v = x[all ? j : idx[j]];
        return !float.IsNaN(v) && q >= threshold;
    }

    /// <summary>Candidate j's probability as the host computes it: (float)(exp((x - m) / T) / sum).</summary>
    private static float Prob(ArrayView<float> x, ArrayView<int> idx, int j, bool all, float m, float invT, double sum)
    {
        float v = x[all ? j : idx[j]];
        return !float.IsNaN(v) ? (float)(Exp((v - m) * invT) / sum) : 0f;
    }

    private static float Exp(float v) => MathF.Exp(v);
    private static double Exp64(double v) => Math.Exp(v);
    private static double Log64(double v) => Math.Log(v);
}
