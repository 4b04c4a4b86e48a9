using System.Runtime.InteropServices;

namespace Loom.Inference.Memory;

/// <summary>What a page of the pool holds.</summary>
public enum PageOwnerKind : byte { Free, Kv, Adapter, Training, Cached }

/// <summary>The owner tag of a page: free, a sequence's KV cache, an adapter's weights, the activation budget of a
/// training run, or the prefix block cache (full KV blocks that sequences of one tenant and adapter share).</summary>
public readonly record struct PageOwner(PageOwnerKind Kind, int Id)
{
    public static readonly PageOwner Free = new(PageOwnerKind.Free, 0);
    public static PageOwner Kv(int sequence) => new(PageOwnerKind.Kv, sequence);
    public static PageOwner Adapter(int slot) => new(PageOwnerKind.Adapter, slot);
    public static PageOwner Training(int run) => new(PageOwnerKind.Training, run);
    public static readonly PageOwner Cached = new(PageOwnerKind.Cached, 0);
}

/// <summary>Page counts of the pool at one moment.</summary>
/// <param name="TrainingPages">Pages counted against training runs' activations (0 unless a run is active).</param>
/// <param name="CachedPages">KV pages of the prefix block cache (shared by sequences, or kept for later ones).</param>
public readonly record struct PoolUsage(int TotalPages, int FreePages, int KvPages, int AdapterPages, int PageBytes, int TrainingPages = 0, int CachedPages = 0);

/// <summary>The unified pool (S-LoRA unified paging): one native, 64-byte aligned buffer cut into fixed-size pages of
/// <see cref="PageFloats"/> float32 values (the model's hidden_size). KV-cache pages and adapter-weight pages come from
/// the same free list, so the two compete for one budget and fragmentation is zero by construction.
/// The size is fixed at construction (in bytes) and never grows. Allocation and freeing are O(1) per page (a stack
/// of free page ids); every page carries an owner tag, so accounting is exact: each page is free or owned.
/// Thread-safe: allocation and freeing take a lock; reading and writing page contents does not.</summary>
public sealed unsafe class PagePool : IDisposable
{
    private float* _base;              // (PageCount, PageFloats)
    private readonly int[] _freeStack;  // (PageCount) free page ids in [0, _freeCount)
    private readonly int[] _stackSlot;  // (PageCount) position of a free page in _freeStack, -1 when owned
    private readonly PageOwnerKind[] _kind; // (PageCount)
    private readonly int[] _ownerId;    // (PageCount)
    private readonly int[] _generation; // (PageCount) allocations of each page so far (a device mirror re-reads a page whose count moved)
    private int _freeCount, _kvPages, _adapterPages, _trainingPages, _cachedPages;
    private readonly Lock _lock = new();

    public int PageFloats { get; }
    public int PageBytes => PageFloats * sizeof(float);
    public int PageCount { get; }
    public long Bytes => (long)PageCount * PageBytes;

    /// <param name="bytes">Pool size; rounded down to whole pages.</param>
    /// <param name="pageFloats">Floats per page (hidden_size).</param>
    public PagePool(long bytes, int pageFloats)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageFloats, 1);
        long pages = bytes / ((long)pageFloats * sizeof(float));
        if (pages < 1) throw new ArgumentOutOfRangeException(nameof(bytes), $"a pool of {bytes} bytes holds no page of {pageFloats * 4} bytes");
        if (pages > int.MaxValue / 2) throw new ArgumentOutOfRangeException(nameof(bytes), "too many pages");
        PageFloats = pageFloats;
        PageCount = (int)pages;
        _base = (float*)NativeMemory.AlignedAlloc((nuint)(pages * pageFloats * sizeof(float)), 64);
        NativeMemory.Clear(_base, (nuint)(pages * pageFloats * sizeof(float)));
        _freeStack = new int[PageCount];
        _stackSlot = new int[PageCount];
        _kind = new PageOwnerKind[PageCount];
        _ownerId = new int[PageCount];
        _generation = new int[PageCount];
        // lowest ids on top, so a fresh pool hands out pages in order
        for (int i = 0; i < PageCount; i++)
        {
            _freeStack[i] = PageCount - 1 - i;
            _stackSlot[PageCount - 1 - i] = i;
        }
        _freeCount = PageCount;
    }

    public int FreePages { get { lock (_lock) return _freeCount; } }

    public PoolUsage Usage
    {
        get { lock (_lock) return new PoolUsage(PageCount, _freeCount, _kvPages, _adapterPages, PageBytes, _trainingPages, _cachedPages); }
    }

    /// <summary>Start of the page buffer, for kernels that read through page tables.</summary>
    internal float* Base
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            return _base;
        }
    }

    /// <summary>The (PageFloats) contents of one page.</summary>
    public Span<float> Page(int id)
    {
        if ((uint)id >= (uint)PageCount) throw new ArgumentOutOfRangeException(nameof(id));
        return new Span<float>(Base + (long)id * PageFloats, PageFloats);
    }

    /// <summary>The device copy of this pool when a GPU backend keeps one whose pages can be newer than the host's (null:
    /// the host's pages are the only copy, or current). Readers of KV pages on the host ask it first
    /// (<see cref="KvSwapSpace"/>).</summary>
    public IDevicePages? Device { get; internal set; }

    /// <summary>How many times page <paramref name="id"/> has been allocated. The host writes a page's contents only
    /// after allocating it (KV swap-in, prefix restore, adapter load), so a copy of the page made at the same count is
    /// current, except for rows the forward pass writes (the GPU backend writes those on the device only and copies them
    /// back when the host asks, <see cref="Device"/>).</summary>
    internal int Generation(int id) => Volatile.Read(ref _generation[id]);

    public PageOwner OwnerOf(int id)
    {
        if ((uint)id >= (uint)PageCount) throw new ArgumentOutOfRangeException(nameof(id));
        lock (_lock) return new PageOwner(_kind[id], _ownerId[id]);
    }

    /// <summary>Takes <c>ids.Length</c> pages for <paramref name="owner"/>, writing their ids; all or nothing.</summary>
    public bool TryAllocate(PageOwner owner, Span<int> ids)
    {
        if (owner.Kind == PageOwnerKind.Free) throw new ArgumentException("pages must be allocated to an owner", nameof(owner));
        lock (_lock)
        {
            if (ids.Length > _freeCount) return false;
            for (int i = 0; i < ids.Length; i++)
            {
                int id = _freeStack[--_freeCount];
                _stackSlot[id] = -1;
                _kind[id] = owner.Kind;
                _ownerId[id] = owner.Id;
                _generation[id]++;
                ids[i] = id;
            }
            Count(owner.Kind) += ids.Length;
        }
        Device?.Reusing(ids); // a device → host copy still landing in a page would overwrite what its new owner writes
        return true;
    }

    /// <summary>Returns pages to the free list. Each must be owned by <paramref name="owner"/>; a page that is free
    /// or someone else's is refused before anything is freed.</summary>
    public void Free(PageOwner owner, ReadOnlySpan<int> ids)
    {
        lock (_lock)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                int id = ids[i];
                string? problem = (uint)id >= (uint)PageCount ? $"page {id} is outside the pool"
                    : _kind[id] != owner.Kind || _ownerId[id] != owner.Id ? $"page {id} belongs to {new PageOwner(_kind[id], _ownerId[id])}, not {owner}"
                    : null;
                if (problem is not null)
                {
                    for (int j = 0; j < i; j++) _kind[ids[j]] = owner.Kind; // undo: nothing is freed
                    throw new InvalidOperationException(problem);
                }
                _kind[id] = PageOwnerKind.Free; // a repeated id in this call now fails the owner check
            }
            foreach (int id in ids)
            {
                _ownerId[id] = 0;
                _stackSlot[id] = _freeCount;
                _freeStack[_freeCount++] = id;
            }
            Count(owner.Kind) -= ids.Length;
        }
    }

    private ref int Count(PageOwnerKind kind)
    {
        switch (kind)
        {
            case PageOwnerKind.Kv: return ref _kvPages;
            case PageOwnerKind.Adapter: return ref _adapterPages;
            case PageOwnerKind.Cached: return ref _cachedPages;
            default: return ref _trainingPages;
        }
    }

    /// <summary>Hands pages from one owner to another without touching their contents or their allocation count (a
    /// device mirror's copy stays current): a sequence's full KV block joining the prefix block cache. Each page must be
    /// owned by <paramref name="from"/>; otherwise nothing changes.</summary>
    public void Transfer(PageOwner from, PageOwner to, ReadOnlySpan<int> ids)
    {
        if (to.Kind == PageOwnerKind.Free) throw new ArgumentException("pages must be handed to an owner", nameof(to));
        lock (_lock)
        {
            foreach (int id in ids)
                if ((uint)id >= (uint)PageCount || _kind[id] != from.Kind || _ownerId[id] != from.Id)
                    throw new InvalidOperationException((uint)id >= (uint)PageCount ? $"page {id} is outside the pool" : $"page {id} belongs to {new PageOwner(_kind[id], _ownerId[id])}, not {from}");
            foreach (int id in ids)
            {
                _kind[id] = to.Kind;
                _ownerId[id] = to.Id;
            }
            Count(from.Kind) -= ids.Length;
            Count(to.Kind) += ids.Length;
        }
    }

    /// <summary>Checks the accounting invariants (every page free xor owned; counters match the tags); returns the
    /// first violation or null. O(pages): for tests and diagnostics.</summary>
    public string? Audit()
    {
        lock (_lock)
        {
            int kv = 0, ad = 0, tr = 0, ca = 0, free = 0;
            for (int id = 0; id < PageCount; id++)
            {
                switch (_kind[id])
                {
                    case PageOwnerKind.Free:
                        free++;
                        int s = _stackSlot[id];
                        if (s < 0 || s >= _freeCount || _freeStack[s] != id) return $"free page {id} is not on the free list";
                        break;
                    case PageOwnerKind.Kv: kv++; if (_stackSlot[id] != -1) return $"owned page {id} is on the free list"; break;
                    case PageOwnerKind.Training: tr++; if (_stackSlot[id] != -1) return $"owned page {id} is on the free list"; break;
                    case PageOwnerKind.Cached: ca++; if (_stackSlot[id] != -1) return $"owned page {id} is on the free list"; break;
                    default: ad++; if (_stackSlot[id] != -1) return $"owned page {id} is on the free list"; break;
                }
            }
            if (free != _freeCount) return $"{free} pages are tagged free but the free list holds {_freeCount}";
            if (kv != _kvPages || ad != _adapterPages || tr != _trainingPages || ca != _cachedPages)
                return $"counters say kv={_kvPages} adapter={_adapterPages} training={_trainingPages} cached={_cachedPages}, tags say kv={kv} adapter={ad} training={tr} cached={ca}";
            return null;
        }
    }

    public void Dispose()
    {
        if (_base == null) return;
        Device?.Detach(); // (it may hold the buffer page-locked)
        Device = null;
        NativeMemory.AlignedFree(_base);
        _base = null;
    }
}
