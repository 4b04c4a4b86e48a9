using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>The CPU backend: System.Numerics.Tensors and Vector256/Vector512, Parallel.For over output rows.</summary>
public sealed unsafe class CpuKernels(SimdLevel level) : IKernels
{
    public CpuKernels() : this(Simd.Best) { }

    public SimdLevel Level { get; } = level;
    public int AttentionScratchRows { get; } = Environment.ProcessorCount * 4;

    public void MatMul(Span<float> y, ReadOnlySpan<float> x, WeightMatrix w, int n)
    {
        if (Level == SimdLevel.Scalar) MatMulKernel.Naive(y, x, w, n);
        else MatMulKernel.Forward(y, x, w, n, Level);
    }

    public void MatMul(Span<float> y1, WeightMatrix w1, Span<float> y2, WeightMatrix w2, Span<float> y3, WeightMatrix? w3, ReadOnlySpan<float> x, int n)
    {
        if (Level == SimdLevel.Scalar || x.Length < n * w1.Cols || y1.Length < n * w1.Rows || y2.Length < n * w2.Rows
            || (w3 != null && y3.Length < n * w3.Rows) || w1.Cols != w2.Cols || (w3 != null && w3.Cols != w1.Cols))
        {
            MatMul(y1, x, w1, n);
            MatMul(y2, x, w2, n);
            if (w3 != null) MatMul(y3, x, w3, n);
            return;
        }
        fixed (float* p1 = y1)
        fixed (float* p2 = y2)
        fixed (float* p3 = y3)
        fixed (float* xp = x)
        {
            if (w3 == null) MatMulKernel.Forward([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2)], xp, n, Level);
            else MatMulKernel.Forward([new MatMulTarget((nint)p1, w1), new MatMulTarget((nint)p2, w2), new MatMulTarget((nint)p3, w3)], xp, n, Level);
        }
    }

    public void RmsNorm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int n)
    {
        int d = weight.Length;
        for (int i = 0; i < n; i++)
        {
            if (Level == SimdLevel.Scalar) NaiveOps.RmsNorm(y.Slice(i * d, d), x.Slice(i * d, d), weight, eps);
            else Ops.RmsNorm(y.Slice(i * d, d), x.Slice(i * d, d), weight, eps);
        }
    }

    public void Rope(Span<float> vec, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin) =>
        Ops.Rope(vec, heads, headDim, cos, sin);

    public void SiluMul(Span<float> y, ReadOnlySpan<float> gate, ReadOnlySpan<float> up)
    {
        if (Level == SimdLevel.Scalar) NaiveOps.SiluMul(y, gate, up);
        else Ops.SiluMul(y, gate, up);
    }

    public int Argmax(ReadOnlySpan<float> x) => Ops.Argmax(x);

    /// <summary>A sequence with at least this many new tokens (a prefill) gets the transposed-keys attention.</summary>
    public const int TransposedAttentionMinTokens = 8;

    public void Attention(in AttentionBatch b)
    {
        int groups = b.Heads / b.KvHeads;
        bool transposed = Level == SimdLevel.Vector512 && b.KeysT.Length > 0;
        // runs of tokens from one sequence: long runs (prefill) share one transposed copy of their keys
        Span<bool> inLongRun = b.Tokens <= 4096 ? stackalloc bool[b.Tokens] : new bool[b.Tokens];
        int shortTokens = b.Tokens;
        if (transposed)
        {
            for (int t = 0; t < b.Tokens;)
            {
                int e = t + 1;
                while (e < b.Tokens && ReferenceEquals(b.Caches[e], b.Caches[t])) e++;
                if (e - t >= TransposedAttentionMinTokens)
                {
                    PrefillRun(b, t, e, groups);
                    inLongRun[t..e].Fill(true);
                    shortTokens -= e - t;
                }
                t = e;
            }
        }
        if (shortTokens > 0) PerToken(b, inLongRun, groups);
    }

    private void PrefillRun(in AttentionBatch b, int t0, int t1, int groups)
    {
        var cache = b.Caches[t0];
        int length = b.Lengths[t1 - 1];
        int blocks = (length + 15) / 16;
        Kernels.Attention.TransposeKeys(b.KeysT, cache, b.Layer, length, b.KvHeads, b.HeadDim);
        int items = (t1 - t0) * b.Heads;
        int chunks = Math.Min(AttentionScratchRows, items);
        fixed (float* outP = b.Output)
        fixed (float* qP = b.Q)
        fixed (float* sP = b.Scratch)
        fixed (float* ktP = b.KeysT)
        fixed (int* lenP = b.Lengths)
        {
            nint o = (nint)outP, q = (nint)qP, s = (nint)sP, kt = (nint)ktP, len = (nint)lenP;
            int heads = b.Heads, hd = b.HeadDim, layer = b.Layer, row = b.ScratchRowLength, ktLength = b.KeysT.Length;
            Parallel.For(0, chunks, c =>
            {
                var scores = new Span<float>((float*)s + (long)c * row, row);
                var keysT = new ReadOnlySpan<float>((float*)kt, ktLength);
                for (int i = c; i < items; i += chunks)   // round-robin: causal rows grow with position
                {
                    int t = t0 + i / heads, h = i % heads;
                    var qh = new ReadOnlySpan<float>((float*)q + ((long)t * heads + h) * hd, hd);
                    var oh = new Span<float>((float*)o + ((long)t * heads + h) * hd, hd);
                    Kernels.Attention.HeadTransposed(oh, qh, keysT, blocks, cache, layer, h / groups, ((int*)len)[t], scores);
                }
            });
        }
    }

    private void PerToken(in AttentionBatch b, ReadOnlySpan<bool> skip, int groups)
    {
        int items = b.Tokens * b.Heads;
        int chunks = Math.Min(AttentionScratchRows, items);
        if (b.Scratch.Length < chunks * b.ScratchRowLength) throw new ArgumentException("attention scratch too small");
        fixed (float* outP = b.Output)
        fixed (float* qP = b.Q)
        fixed (float* sP = b.Scratch)
        fixed (int* lenP = b.Lengths)
        fixed (bool* skipP = skip)
        {
            nint o = (nint)outP, q = (nint)qP, s = (nint)sP, len = (nint)lenP, sk = (nint)skipP;
            var caches = b.Caches;
            int heads = b.Heads, hd = b.HeadDim, layer = b.Layer, row = b.ScratchRowLength;
            var level = Level;
            void Run(int c)
            {
                // items dealt round-robin: causal rows grow with position, so contiguous ranges would be uneven
                var scores = new Span<float>((float*)s + (long)c * row, row);
                for (int i = c; i < items; i += chunks)
                {
                    int t = i / heads, h = i % heads;
                    if (((bool*)sk)[t]) continue;
                    int length = ((int*)len)[t];
                    var qh = new ReadOnlySpan<float>((float*)q + ((long)t * heads + h) * hd, hd);
                    var oh = new Span<float>((float*)o + ((long)t * heads + h) * hd, hd);
                    if (level == SimdLevel.Scalar) Kernels.Attention.NaiveHead(oh, qh, caches[t], layer, h / groups, length);
                    else Kernels.Attention.Head(oh, qh, caches[t], layer, h / groups, length, scores, level);
                }
            }
            long work = 0;
            for (int t = 0; t < b.Tokens; t++) if (!skip[t]) work += b.Lengths[t];
            if (chunks == 1 || work * heads * hd < 1 << 15)
                for (int c = 0; c < chunks; c++) Run(c);
            else
                Parallel.For(0, chunks, Run);
        }
    }
}
