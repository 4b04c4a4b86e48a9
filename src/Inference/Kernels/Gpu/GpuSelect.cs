using ILGPU;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Device code that selects a row's top-k or top-p candidates, sorted most likely first, into a candidate list
/// (keys and token ids). A value's order key (<see cref="Key"/>) is its float bits mapped so that unsigned order is
/// float order; candidates are found by bisecting on that key (32 passes over the row), collected in token order, then
/// sorted (bitonic, in global memory). Every thread of the group calls these; NaN logits are never candidates.</summary>
internal static class GpuSelect
{
    /// <summary>Unsigned order of floats (NaN excluded by the callers).</summary>
    public static uint Key(float v)
    {
        uint b = Interop.FloatAsInt(v);
        return (b & 0x80000000u) != 0 ? ~b : b | 0x80000000u;
    }

    public static float FromKey(uint k) => Interop.IntAsFloat((k & 0x80000000u) != 0 ? k & 0x7FFFFFFFu : ~k);

    /// <summary>(key, index) as one ordered word: larger is more likely, and on equal values the lower token id first.</summary>
    public static ulong Rank(float v, int i) => ((ulong)Key(v) << 32) | (uint)~i;

    public static int IndexOfRank(ulong r) => ~(int)(uint)r;

    /// <summary>The k most likely tokens of x (ties: lower id first, as <see cref="Ops.TopK"/>), sorted, into
    /// key/idx [0, k). k is at most the row's non-NaN count and the list's length.</summary>
    public static void TopK(ArrayView<uint> key, ArrayView<int> idx, ArrayView<float> x, int vocab, int k,
        ArrayView<int> ia, ArrayView<int> ib, int tid, int g)
    {
        // the largest t with at least k keys ≥ t is the k-th largest key
        uint t = 0;
        for (int bit = 31; bit >= 0; bit--)
        {
            uint c = t | (1u << bit);
            int m = 0;
            for (int i = tid; i < vocab; i += g)
            {
                float v = x[i];
                if (!float.IsNaN(v) && Key(v) >= c) m++;
            }
            if (GpuReduce.SumInt(ia, m, tid, g) >= k) t = c;
        }
        int above = 0;
        for (int i = tid; i < vocab; i += g)
        {
            float v = x[i];
            if (!float.IsNaN(v) && Key(v) > t) above++;
        }
        above = GpuReduce.SumInt(ia, above, tid, g);
        Collect(key, idx, x, vocab, t, k - above, ia, ib, tid, g);
        Sort(key, idx, k, tid, g);
    }

    /// <summary>Top-p: the fewest most likely tokens whose share of the weights w (exp((x - max) / T), 0 for NaN) reaches
    /// target, sorted, into key/idx [0, n) when n ≤ the list's length. Returns n (at least 1 when target > 0).</summary>
    public static int Nucleus(ArrayView<uint> key, ArrayView<int> idx, ArrayView<float> x, ArrayView<float> w, int vocab, double target,
        ArrayView<double> d, ArrayView<int> ia, ArrayView<int> ib, ArrayView<float> f, int tid, int g)
    {
        // the largest t whose keys ≥ t weigh at least the target
        uint t = 0;
        for (int bit = 31; bit >= 0; bit--)
        {
            uint c = t | (1u << bit);
            double m = 0;
            for (int i = tid; i < vocab; i += g)
            {
                float v = x[i];
                if (!float.IsNaN(v) && Key(v) >= c) m += w[i];
            }
            if (GpuReduce.SumDouble(d, m, tid, g) >= target) t = c;
        }
        // everything above t, then as many tokens at t (lower ids first) as the target still needs
        double above = 0;
        int countAbove = 0, ties = 0;
        float tieWeight = 0;
        for (int i = tid; i < vocab; i += g)
        {
            float v = x[i];
            if (float.IsNaN(v)) continue;
            uint k = Key(v);
            if (k > t) { above += w[i]; countAbove++; }
            else if (k == t) { ties++; tieWeight = w[i]; }
        }
        above = GpuReduce.SumDouble(d, above, tid, g);
        countAbove = GpuReduce.SumInt(ia, countAbove, tid, g);
        ties = GpuReduce.SumInt(ia, ties, tid, g);
        tieWeight = GpuReduce.Max(f, tieWeight, tid, g);
        int take = 0;
        double kept = above;
        while (take < ties && kept < target)
        {
            kept += tieWeight;
            take++;
        }
        int n = countAbove + take;
        if (n < 1) n = 1;
        if (n > (int)key.Length) return n; // too many for the list: the host samples this row
        Collect(key, idx, x, vocab, t, n - countAbove, ia, ib, tid, g);
        Sort(key, idx, n, tid, g);
        return n;
    }

    /// <summary>key/idx [0, n) = every token with key above t and the first <paramref name="ties"/> tokens with key t, in
    /// token order (each thread takes one contiguous range of the row, so positions follow a scan over the threads).</summary>
    private static void Collect(ArrayView<uint> key, ArrayView<int> idx, ArrayView<float> x, int vocab, uint t, int ties,
        ArrayView<int> ia, ArrayView<int> ib, int tid, int g)
    {
        int chunk = (vocab + g - 1) / g, lo = tid * chunk, hi = lo + chunk;
        if (lo > vocab) lo = vocab;
        if (hi > vocab) hi = vocab;
        int gt = 0, eq = 0;
        for (int i = lo; i < hi; i++)
        {
            float v = x[i];
            if (float.IsNaN(v)) continue;
            uint k = Key(v);
            if (k > t) gt++;
            else if (k == t) eq++;
        }
        ia[tid] = gt;
        ib[tid] = eq;
        Group.Barrier();
        if (tid == 0)
        {
            int position = 0, tie = 0;
            for (int j = 0; j < g; j++)
            {
                int gj = ia[j], ej = ib[j];
                int taken = ties - tie;
                if (taken < 0) taken = 0;
                if (taken > ej) taken = ej;
                ia[j] = position;
                ib[j] = tie;
                position += gj + taken;
                tie += ej;
            }
        }
        Group.Barrier();
        int at = ia[tid], rank = ib[tid];
        Group.Barrier();
        for (int i = lo; i < hi; i++)
        {
            float v = x[i];
            if (float.IsNaN(v)) continue;
            uint k = Key(v);
            if (k > t || (k == t && rank++ < ties))
            {
                key[at] = k;
                idx[at] = i;
                at++;
            }
        }
        Group.Barrier();
    }

    /// <summary>Sorts key/idx [0, n) most likely first (lower id first on equal keys): bitonic over the next power of two,
    /// the tail padded with entries that sort last.</summary>
    private static void Sort(ArrayView<uint> key, ArrayView<int> idx, int n, int tid, int g)
    {
        int size = 1;
        while (size < n) size <<= 1;
        for (int i = n + tid; i < size; i += g)
        {
            key[i] = 0;
            idx[i] = int.MaxValue;
        }
        Group.Barrier();
        for (int block = 2; block <= size; block <<= 1)
            for (int stride = block >> 1; stride > 0; stride >>= 1)
            {
                for (int i = tid; i < size; i += g)
                {
                    int j = i ^ stride;
                    if (j <= i) continue;
                    uint ki = key[i], kj = key[j];
                    int ii = idx[i], ij = idx[j];
                    bool jFirst = kj > ki || (kj == ki && ij < ii);
                    bool first = (i & block) == 0; // this block ends most likely first
                    if (first == jFirst)
                    {
                        key[i] = kj;
                        key[j] = ki;
                        idx[i] = ij;
                        idx[j] = ii;
                    }
                }
                Group.Barrier();
            }
    }
}
