using ILGPU;
using ILGPU.Algorithms;

namespace Loom.Inference.Kernels.Gpu;

/// <summary>Where a layer's KV lives on the device: the mirror of the pool's pages (pages, PageFloats) and each
/// sequence's page table in PagedKvCache order ([block][layer][keys | values]), concatenated; a token finds its
/// sequence's table at TableOffset[t].</summary>
internal readonly record struct PagedKvShape(int Layer, int Layers, int BlockSize, int KvDim, int PageFloats)
{
    /// <summary>Pool index of element 0 of position <paramref name="pos"/> in a sequence's keys (kv 0) or values (kv 1).</summary>
    public long RowAt(ArrayView<int> table, int tableOffset, int pos, int kv) =>
        (long)table[tableOffset + (pos / BlockSize * Layers + Layer) * 2 + kv] * PageFloats + (long)(pos % BlockSize) * KvDim;
}

/// <summary>Head layout of an attention call.</summary>
internal readonly record struct AttentionShape(int Heads, int KvHeads, int HeadDim, float Scale);

/// <summary>Device code of causal GQA attention over the paged KV cache (decode and prefill alike: token t sees positions
/// [0, Lengths[t])), and of the write of new keys and values into their pages. One group per (token, head): keys are
/// scored in chunks of <see cref="Chunk"/> into shared memory with an online softmax (running max and sum), the output
/// accumulates in shared memory, so the context length is bounded only by the page table. Scalar twin:
/// <see cref="Attention.Head"/>.</summary>
internal static class GpuAttention
{
    public const int Chunk = 256;
    public const int MaxHeadDim = 256;

    /// <summary>output (tokens, heads*headDim) from q (tokens, heads*headDim). Grid: tokens × heads groups.</summary>
    public static void Attend(ArrayView<float> output, ArrayView<float> q, ArrayView<float> pages, ArrayView<int> table,
        ArrayView<int> tableOffset, ArrayView<int> lengths, PagedKvShape kv, AttentionShape s)
    {
        int t = Grid.IdxX / s.Heads, h = Grid.IdxX % s.Heads, tid = Group.IdxX, g = Group.DimX;
        var qs = SharedMemory.Allocate<float>(MaxHeadDim);
        var acc = SharedMemory.Allocate<float>(MaxHeadDim);
        var sc = SharedMemory.Allocate<float>(Chunk);
        var red = SharedMemory.Allocate<float>(GpuMatMul.MaxGroup);
        int hd = s.HeadDim, head = h / (s.Heads / s.KvHeads) * hd, len = lengths[t], tab = tableOffset[t];
        long qo = ((long)t * s.Heads + h) * hd;
        for (int d = tid; d < hd; d += g)
        {
            qs[d] = q[qo + d];
            acc[d] = 0f;
        }
        Group.Barrier();
        float m = float.NegativeInfinity, l = 0f;
        for (int j0 = 0; j0 < len; j0 += Chunk)
        {
            int n = XMath.Min(Chunk, len - j0);
            float localMax = float.NegativeInfinity;
            for (int j = tid; j < n; j += g)
            {
                long k = kv.RowAt(table, tab, j0 + j, 0) + head;
                float dot = 0f;
                for (int d = 0; d < hd; d++) dot += qs[d] * pages[k + d];
                dot *= s.Scale;
                sc[j] = dot;
                localMax = XMath.Max(localMax, dot);
            }
            float newM = XMath.Max(m, GpuReduce.Max(red, localMax, tid, g));
            float factor = XMath.Exp(m - newM);
            float localSum = 0f;
            for (int j = tid; j < n; j += g)
            {
                float p = XMath.Exp(sc[j] - newM);
                sc[j] = p;
                localSum += p;
            }
            l = l * factor + GpuReduce.Sum(red, localSum, tid, g);
            for (int d = tid; d < hd; d += g)
            {
                float a = acc[d] * factor;
                for (int j = 0; j < n; j++) a += sc[j] * pages[kv.RowAt(table, tab, j0 + j, 1) + head + d];
                acc[d] = a;
            }
            m = newM;
            Group.Barrier();
        }
        for (int d = tid; d < hd; d += g) output[qo + d] = acc[d] / l;
    }

    /// <summary>RoPE on the new queries (in place) and keys at each token's position, and the write of the rotated keys
    /// and the values into their pages at Positions[t] (the device's pages are the authoritative copy of them; decision
    /// 010): one launch. Threads per token: heads × half (query pairs), kvHeads × half (key pairs: rotate, write both),
    /// kvDim (values). Scalar twins: <see cref="Ops.Rope"/> and <see cref="PagedKvCache"/>'s rows.</summary>
    public static void RopeWriteKv(Index1D index, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> pages,
        ArrayView<int> table, ArrayView<int> tableOffset, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        PagedKvShape kv, RopeShape r)
    {
        int half = r.HeadDim / 2, qPairs = r.Heads * half, kPairs = r.KvHeads * half, perToken = qPairs + kPairs + kv.KvDim;
        int t = index / perToken, j = index % perToken, pos = positions[t];
        if (j >= qPairs + kPairs)
        {
            int e = j - qPairs - kPairs;
            pages[kv.RowAt(table, tableOffset[t], pos, 1) + e] = v[(long)t * kv.KvDim + e];
            return;
        }
        int i = j % half;
        long rope = (long)pos * half + i;
        float c = cos[rope], sn = sin[rope];
        if (j < qPairs)
        {
            long at = ((long)t * r.Heads + j / half) * r.HeadDim + i;
            float x0 = q[at], x1 = q[at + half];
            q[at] = x0 * c - x1 * sn;
            q[at + half] = x1 * c + x0 * sn;
        }
        else
        {
            int h = (j - qPairs) / half;
            long at = (long)t * kv.KvDim + h * r.HeadDim + i;
            float x0 = k[at], x1 = k[at + half];
            long row = kv.RowAt(table, tableOffset[t], pos, 0) + h * r.HeadDim + i;
            pages[row] = x0 * c - x1 * sn;
            pages[row + half] = x1 * c + x0 * sn;
        }
    }
}
