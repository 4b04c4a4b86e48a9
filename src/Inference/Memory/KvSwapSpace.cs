using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Loom.Inference.Memory;

/// <summary>A sequence's keys and values while it is swapped out: one contiguous host buffer laid out
/// (layers, keys | values, Length, KvDim), so the copy back is a handful of long runs, not a walk over pages.</summary>
public sealed unsafe class SwappedKv : IDisposable
{
    internal float* Data;                 // (Layers, 2, Length, KvDim)
    public int Length { get; }
    public int Layers { get; }
    public int KvDim { get; }
    public long Bytes => (long)Layers * 2 * Length * KvDim * sizeof(float);
    internal bool Freed => Data == null;

    internal SwappedKv(int length, int layers, int kvDim)
    {
        Length = length;
        Layers = layers;
        KvDim = kvDim;
        Data = (float*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
    }

    /// <summary>The (Length, KvDim) keys (kv 0) or values (kv 1) of one layer.</summary>
    internal Span<float> Run(int layer, int kv) => new(Data + ((long)layer * 2 + kv) * Length * KvDim, Length * KvDim);

    public void Dispose()
    {
        if (Data == null) return;
        NativeMemory.AlignedFree(Data);
        Data = null;
    }
}

/// <summary>Host memory for the KV caches of preempted sequences (swap, the alternative to recomputing them), bounded
/// in bytes. Swapping out copies the valid positions of every page of a cache into one host buffer, then the caller
/// frees the pages; swapping in reserves pages again and copies back. Layers are copied in parallel when the cache is
/// large. Counts bytes and time both ways. Used from the engine loop; the counters may be read from any thread.</summary>
public sealed class KvSwapSpace(long capacityBytes)
{
    /// <summary>Below this many bytes a copy stays on the calling thread.</summary>
    private const long ParallelBytes = 1 << 20;
    private long _used, _bytesOut, _bytesIn, _outs, _ins, _ticks;

    public long CapacityBytes { get; } = capacityBytes >= 0 ? capacityBytes : throw new ArgumentOutOfRangeException(nameof(capacityBytes));
    public long UsedBytes => Interlocked.Read(ref _used);
    public long BytesOut => Interlocked.Read(ref _bytesOut);
    public long BytesIn => Interlocked.Read(ref _bytesIn);
    public long SwapOuts => Interlocked.Read(ref _outs);
    public long SwapIns => Interlocked.Read(ref _ins);
    /// <summary>Time spent copying, both ways.</summary>
    public TimeSpan CopyTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks));

    /// <summary>Copies the cache's valid positions to host memory; null (nothing copied) when the space lacks room or
    /// the cache is empty. The cache is left as it was: the caller releases its pages.</summary>
    public SwappedKv? SwapOut(PagedKvCache cache)
    {
        int length = cache.Length;
        if (length == 0) return null;
        long bytes = (long)cache.Layers * 2 * length * cache.KvDim * sizeof(float);
        if (Interlocked.Read(ref _used) + bytes > CapacityBytes) return null;
        long start = Stopwatch.GetTimestamp();
        var swapped = new SwappedKv(length, cache.Layers, cache.KvDim);
        Copy(cache, swapped, toHost: true);
        Interlocked.Add(ref _used, bytes);
        Interlocked.Add(ref _bytesOut, bytes);
        Interlocked.Increment(ref _outs);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
        return swapped;
    }

    /// <summary>Restores a swapped cache into <paramref name="cache"/> (empty, with capacity reserved for at least
    /// <see cref="SwappedKv.Length"/> positions) and frees the host copy.</summary>
    public void SwapIn(SwappedKv swapped, PagedKvCache cache)
    {
        if (cache.Length != 0) throw new InvalidOperationException("swap in needs an empty cache");
        if (cache.Capacity < swapped.Length) throw new InvalidOperationException($"swap in needs room for {swapped.Length} positions, the cache has {cache.Capacity}");
        if (cache.Layers != swapped.Layers || cache.KvDim != swapped.KvDim) throw new ArgumentException("the cache has another shape than the swapped one");
        long start = Stopwatch.GetTimestamp();
        Copy(cache, swapped, toHost: false);
        cache.Advance(swapped.Length);
        Interlocked.Add(ref _bytesIn, swapped.Bytes);
        Interlocked.Increment(ref _ins);
        Drop(swapped);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
    }

    /// <summary>Frees a host copy that will not be swapped in (its sequence ended).</summary>
    public void Drop(SwappedKv swapped)
    {
        if (swapped.Freed) return;
        Interlocked.Add(ref _used, -swapped.Bytes);
        swapped.Dispose();
    }

    private static void Copy(PagedKvCache cache, SwappedKv host, bool toHost)
    {
        if (host.Bytes >= ParallelBytes && cache.Layers > 1)
            Parallel.For(0, cache.Layers, layer => CopyLayer(cache, host, layer, toHost));
        else
            for (int layer = 0; layer < cache.Layers; layer++) CopyLayer(cache, host, layer, toHost);
    }

    /// <summary>One layer's keys and values: page by page into (or out of) two contiguous runs.</summary>
    private static void CopyLayer(PagedKvCache cache, SwappedKv host, int layer, bool toHost)
    {
        int bs = cache.BlockSize, dim = cache.KvDim, length = host.Length;
        for (int kv = 0; kv < 2; kv++)
        {
            var run = host.Run(layer, kv);
            for (int block = 0, pos = 0; pos < length; block++, pos += bs)
            {
                int n = Math.Min(bs, length - pos) * dim;
                var page = (kv == 0 ? cache.Keys(layer, block) : cache.Values(layer, block))[..n];
                var part = run.Slice(pos * dim, n);
                if (toHost) page.CopyTo(part);
                else part.CopyTo(page);
            }
        }
    }
}
