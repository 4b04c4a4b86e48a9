using System.Diagnostics;
using System.Runtime.InteropServices;
using Loom.Inference.Model;

namespace Loom.Inference.Memory;

/// <summary>A sequence's keys and values while it is swapped out: its pages in page-table order, one after another in
/// one host buffer, (pages, BlockSize * KvDim) elements of its cache's format.</summary>
public sealed unsafe class SwappedKv
{
    internal byte* Data;                  // (Pages, PageUsed) bytes
    internal long Capacity;               // bytes of the buffer (it may be a reused, larger one)
    public int Length { get; }
    public int Pages { get; }
    /// <summary>Bytes of each page that hold positions (<see cref="PagedKvCache.PageBytesUsed"/>).</summary>
    internal int PageUsed { get; }
    public KvCacheFormat Format { get; }
    public long Bytes => (long)Pages * PageUsed;
    internal bool Freed => Data == null;
    /// <summary>Device → host copies of the pages that the copy out reads (the GPU backend's), still to be waited for.</summary>
    internal DeviceCopies Pending { get; set; }
    /// <summary>The space that holds it (restore and drop it there).</summary>
    public KvSwapSpace Owner { get; }

    internal SwappedKv(KvSwapSpace owner, byte* data, long capacity, int length, int pages, int pageUsed, KvCacheFormat format)
    {
        Format = format;
        Owner = owner;
        Data = data;
        Capacity = capacity;
        Length = length;
        Pages = pages;
        PageUsed = pageUsed;
    }
}

/// <summary>Host memory for the KV caches of preempted sequences (swap, the alternative to recomputing them), bounded
/// in bytes. Swapping out copies a cache's pages to one host buffer in page-table order, then the caller frees the
/// pages; swapping in reserves pages again and copies back. Pages adjacent in the pool are copied as one run (pages
/// taken together are usually adjacent), and large caches are split across cores. Freed host buffers are kept for
/// reuse (within the bound), so a swap does not pay for fresh memory. Used from the engine loop, whose copies may run
/// on worker threads (each swap's copy touches only its own buffer and pages); the counters may be read from any thread.</summary>
public sealed unsafe class KvSwapSpace(PagePool pool, long capacityBytes) : IDisposable
{
    /// <summary>Below this many bytes a copy stays on the calling thread.</summary>
    private const long ParallelBytes = 1 << 20;
    private readonly List<(nint Data, long Bytes)> _spare = [];
    private long _used, _spareBytes, _bytesOut, _bytesIn, _outs, _ins, _ticks;

    public long CapacityBytes { get; } = capacityBytes >= 0 ? capacityBytes : throw new ArgumentOutOfRangeException(nameof(capacityBytes));
    /// <summary>Bytes held by swapped caches (not counting spare buffers kept for reuse).</summary>
    public long UsedBytes => Interlocked.Read(ref _used);
    public long BytesOut => Interlocked.Read(ref _bytesOut);
    public long BytesIn => Interlocked.Read(ref _bytesIn);
    public long SwapOuts => Interlocked.Read(ref _outs);
    public long SwapIns => Interlocked.Read(ref _ins);
    /// <summary>Time spent copying, both ways.</summary>
    public TimeSpan CopyTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks));

    /// <summary>Copies the cache's pages (those holding its valid positions) to host memory; null (nothing copied) when
    /// the space lacks room or the cache is empty. The cache is left as it was: the caller releases its pages.</summary>
    public SwappedKv? SwapOut(PagedKvCache cache)
    {
        if (BeginSwapOut(cache) is not { } swapped) return null;
        CopyOut(cache, swapped);
        return swapped;
    }

    /// <summary>Takes the host buffer for a swap out (null when the space lacks room or the cache is empty); the copy
    /// is <see cref="CopyOut"/>, which may run on another thread while the cache's pages stay untouched. On the thread
    /// that runs the forward passes: where a device holds newer copies of the cache's pages (the GPU backend), their
    /// device → host copies are issued here and run while the device computes; <see cref="CopyOut"/> waits for them.</summary>
    internal SwappedKv? BeginSwapOut(PagedKvCache cache)
    {
        int length = cache.Length;
        if (length == 0) return null;
        int pages = PagesFor(cache);
        long bytes = BytesFor(cache);
        var (data, capacity) = Rent(bytes);
        if (data == 0) return null;
        var swapped = new SwappedKv(this, (byte*)data, capacity, length, pages, cache.PageBytesUsed, cache.Format);
        if (cache.Pool.Device is { } device)
        {
            try { swapped.Pending = device.ToHost(cache.PageTable[..pages]); }
            catch
            {
                Drop(swapped);
                throw;
            }
        }
        return swapped;
    }

    /// <summary>Host bytes a swap out of the cache's valid positions takes (the used part of each page, in its format).</summary>
    public static long BytesFor(PagedKvCache cache) => (long)PagesFor(cache) * cache.PageBytesUsed;

    private static int PagesFor(PagedKvCache cache) => (cache.Length + cache.BlockSize - 1) / cache.BlockSize * cache.Layers * 2;

    /// <summary>Copies the cache's pages into the buffer of <see cref="BeginSwapOut"/>, once the device → host copies it
    /// issued have landed in them. Thread-safe across swaps; the caller frees the pages only after it returns.</summary>
    internal void CopyOut(PagedKvCache cache, SwappedKv swapped, bool parallel = true)
    {
        long start = Stopwatch.GetTimestamp();
        swapped.Pending.Wait();
        Copy(cache, swapped, toHost: true, parallel);
        Interlocked.Add(ref _bytesOut, swapped.Bytes);
        Interlocked.Increment(ref _outs);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
    }

    /// <summary>Restores a swapped cache into <paramref name="cache"/> (empty, with capacity reserved for at least
    /// <see cref="SwappedKv.Length"/> positions) and frees the host copy.</summary>
    public void SwapIn(SwappedKv swapped, PagedKvCache cache)
    {
        CheckSwapIn(swapped, cache);
        CopyIn(swapped, cache);
        CompleteSwapIn(swapped, cache);
    }

    /// <summary>Throws when <paramref name="swapped"/> cannot be restored into <paramref name="cache"/>.</summary>
    internal void CheckSwapIn(SwappedKv swapped, PagedKvCache cache)
    {
        if (swapped.Freed) throw new InvalidOperationException("this swapped cache was already restored or dropped");
        if (swapped.Owner != this) throw new ArgumentException("the swapped cache belongs to another swap space", nameof(swapped));
        if (cache.Length != 0) throw new InvalidOperationException("swap in needs an empty cache");
        if (cache.Capacity < swapped.Length) throw new InvalidOperationException($"swap in needs room for {swapped.Length} positions, the cache has {cache.Capacity}");
        if (cache.Format != swapped.Format || cache.PageBytesUsed != swapped.PageUsed
            || (swapped.Length + cache.BlockSize - 1) / cache.BlockSize * cache.Layers * 2 != swapped.Pages)
            throw new ArgumentException("the cache has another shape than the swapped one");
    }

    /// <summary>Copies the host copy into the cache's reserved pages (checked by <see cref="CheckSwapIn"/>), leaving the
    /// cache's length and the host copy as they were; may run on another thread. Thread-safe across swaps.</summary>
    internal void CopyIn(SwappedKv swapped, PagedKvCache cache, bool parallel = true)
    {
        long start = Stopwatch.GetTimestamp();
        Copy(cache, swapped, toHost: false, parallel);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
    }

    /// <summary>After <see cref="CopyIn"/>: the cache holds the swapped positions; the host copy is freed.</summary>
    internal void CompleteSwapIn(SwappedKv swapped, PagedKvCache cache)
    {
        cache.Advance(swapped.Length);
        Interlocked.Add(ref _bytesIn, swapped.Bytes);
        Interlocked.Increment(ref _ins);
        Drop(swapped);
    }

    /// <summary>Frees a host copy that will not be swapped in (its sequence ended). Its buffer is kept for reuse.</summary>
    public void Drop(SwappedKv swapped)
    {
        if (swapped.Freed) return;
        if (swapped.Owner != this) throw new ArgumentException("the swapped cache belongs to another swap space", nameof(swapped));
        lock (_spare)
        {
            _spare.Add(((nint)swapped.Data, swapped.Capacity));
            _spareBytes += swapped.Capacity;
            Interlocked.Add(ref _used, -swapped.Capacity);
        }
        swapped.Data = null;
    }

    /// <summary>The smallest spare buffer that fits, else a new one if the bound allows (spare ones freed first).</summary>
    private (nint Data, long Capacity) Rent(long bytes)
    {
        lock (_spare)
        {
            int best = -1;
            for (int i = 0; i < _spare.Count; i++)
                if (_spare[i].Bytes >= bytes && (best < 0 || _spare[i].Bytes < _spare[best].Bytes)) best = i;
            if (best >= 0 && _spare[best].Bytes <= 2 * bytes)
            {
                var s = _spare[best];
                _spare.RemoveAt(best);
                _spareBytes -= s.Bytes;
                Interlocked.Add(ref _used, s.Bytes);
                return (s.Data, s.Bytes);
            }
            while (_used + _spareBytes + bytes > CapacityBytes && _spare.Count > 0)
            {
                var s = _spare[^1];
                _spare.RemoveAt(_spare.Count - 1);
                _spareBytes -= s.Bytes;
                NativeMemory.AlignedFree((void*)s.Data);
            }
            if (_used + bytes > CapacityBytes) return (0, 0);
            Interlocked.Add(ref _used, bytes);
            return ((nint)NativeMemory.AlignedAlloc((nuint)bytes, 64), bytes);
        }
    }

    /// <summary>Frees the spare buffers. Swapped caches still out are the caller's to drop first.</summary>
    public void Dispose()
    {
        lock (_spare)
        {
            foreach (var s in _spare) NativeMemory.AlignedFree((void*)s.Data);
            _spare.Clear();
            _spareBytes = 0;
        }
    }

    private void Copy(PagedKvCache cache, SwappedKv host, bool toHost, bool parallel = true)
    {
        int parts = parallel && host.Bytes >= ParallelBytes ? Math.Min(Environment.ProcessorCount, host.Pages) : 1;
        if (parts == 1) CopyPages(cache, host, 0, host.Pages, toHost);
        else Parallel.For(0, parts, p => CopyPages(cache, host, (int)((long)host.Pages * p / parts), (int)((long)host.Pages * (p + 1) / parts), toHost));
    }

    /// <summary>Pages [from, to) in page-table order ([block][layer][keys | values]); runs of pages adjacent in the pool
    /// (and filled to the end) are copied with one call. Bytes: the used part of a page (<see cref="SwappedKv.PageUsed"/>)
    /// is the same whatever the format holds.</summary>
    private void CopyPages(PagedKvCache cache, SwappedKv host, int from, int to, bool toHost)
    {
        int used = host.PageUsed, stride = pool.PageBytes;
        bool full = used == stride;
        int runStart = from;
        byte* runAt = null;
        for (int i = from; i <= to; i++)
        {
            byte* at = i < to ? PageAt(cache, i) : null;
            if (runAt != null && at == runAt + (long)(i - runStart) * stride && full) continue;
            if (runAt != null)
            {
                long n = (long)(i - runStart) * used;
                byte* h = host.Data + (long)runStart * used;
                if (toHost) Buffer.MemoryCopy(runAt, h, n, n);
                else Buffer.MemoryCopy(h, runAt, n, n);
            }
            runStart = i;
            runAt = at;
        }
    }

    /// <summary>Page i of the cache's page table ([block][layer][keys | values]).</summary>
    private static byte* PageAt(PagedKvCache cache, int i) => (byte*)(cache.Pool.Base + (long)cache.PageTable[i] * cache.Pool.PageFloats);
}
