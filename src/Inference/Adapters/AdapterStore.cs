using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Inference.Adapters;

/// <summary>Registered LoRA adapters on three tiers: disk (the PEFT folder), a bytes-bounded host cache (LRU) of
/// <see cref="AdapterImage"/>s (the pool's page layout, Bᵀ already transposed, so a pool load is a straight copy), and
/// pool pages (<see cref="AdapterResidency"/>). An adapter is copied into the pool when a running batch needs it
/// (<see cref="EnsureResident"/>, which pins it) and its pages are freed, least recently used first among adapters
/// with no pin, when the pool needs room. <see cref="Prefetch"/> warms the host cache for queued requests on the
/// thread pool while the engine computes.
/// Threading: the engine loop thread calls EnsureResident / Release / MakeRoom; Register, Unregister, Prefetch and
/// Metrics may be called from any thread. One lock guards the bookkeeping; disk reads happen outside it.</summary>
public sealed class AdapterStore
{
    private sealed class Entry(string id, string folder, int pages)
    {
        public readonly string Id = id;
        public readonly string Folder = folder;
        public readonly int Pages = pages;
        public AdapterImage? Host;                  // in the host cache when non-null
        public LinkedListNode<Entry>? HostNode;     // position in the host LRU list
        public AdapterResidency? Resident;          // in pool pages when non-null
        public int Pins;                            // running requests using the resident copy
        public long LastUsed;                       // tick of the last EnsureResident
        public bool Removed;
    }

    private readonly ModelConfig _base;
    private readonly PagePool _pool;
    private readonly AdapterStoreOptions _options;
    private readonly PeftValidation _validation;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _hostLru = new(); // most recently used first
    private readonly Lock _lock = new();
    private long _hostBytes, _tick, _diskLoads, _poolLoads, _poolEvictions, _hostEvictions, _prefetchFailures;
    private int _nextSlot = 1;

    public AdapterStore(ModelConfig baseModel, PagePool pool, AdapterStoreOptions? options = null)
    {
        _base = baseModel;
        _pool = pool;
        _options = options ?? new AdapterStoreOptions();
        _validation = new PeftValidation(_options.MaxRank, _options.BaseModelName);
    }

    public PagePool Pool => _pool;

    /// <summary>Reads and validates the PEFT folder against the base model, then registers it under
    /// <paramref name="id"/>. Throws <see cref="AdapterFormatException"/> on any problem, leaving nothing registered.
    /// <paramref name="validated"/>: the folder's files were validated in full before and are known unchanged (the
    /// platform checks them against the hash recorded at upload), so only adapter_config.json is read now (the pages the
    /// adapter takes follow from it); the weights are read, and checked again, when a request first needs them.</summary>
    public void Register(string id, string folder, bool validated = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        AdapterImage? image = null;
        int pages;
        if (validated) pages = AdapterImage.PagesFor(PeftAdapter.ReadConfig(folder, _base, _validation), _base, _pool.PageFloats, _options.PageFormat);
        else
        {
            image = LoadFromDisk(folder, expectedPages: -1);
            pages = image.PageCount;
        }
        if (pages > _pool.PageCount)
            throw new AdapterFormatException(folder, $"the adapter needs {pages} pages, more than the whole pool ({_pool.PageCount})");
        lock (_lock)
        {
            if (_entries.ContainsKey(id)) throw new InvalidOperationException($"adapter '{id}' is already registered");
            var e = new Entry(id, folder, pages);
            _entries.Add(id, e);
            if (image is not null) PutInHostCache(e, image);
        }
    }

    /// <summary>Forgets an adapter (frees its pool pages and host copy). Refused while a running request pins it.</summary>
    public bool Unregister(string id)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(id, out var e)) return false;
            if (e.Pins > 0) throw new InvalidOperationException($"adapter '{id}' is in use by {e.Pins} running request(s)");
            e.Resident?.Free();
            e.Resident = null;
            DropFromHostCache(e);
            e.Removed = true;
            _entries.Remove(id);
            return true;
        }
    }

    public bool IsRegistered(string id) { lock (_lock) return _entries.ContainsKey(id); }

    public bool IsResident(string id) { lock (_lock) return _entries.TryGetValue(id, out var e) && e.Resident is not null; }

    public bool IsInHostCache(string id) { lock (_lock) return _entries.TryGetValue(id, out var e) && e.Host is not null; }

    /// <summary>Pool pages the adapter takes when resident.</summary>
    public int PagesOf(string id) { lock (_lock) return Get(id).Pages; }

    /// <summary>Pages <see cref="EnsureResident"/> would have to take for this adapter now (0 when resident).</summary>
    public int PagesToLoad(string id) { lock (_lock) { var e = Get(id); return e.Resident is null ? e.Pages : 0; } }

    /// <summary>Pages held by resident adapters that no running request pins: what <see cref="MakeRoom"/> can free.
    /// Admission check (S-LoRA's shared budget): KV pages + PagesToLoad(adapter) &lt;= pool free + ReclaimablePages.</summary>
    public int ReclaimablePages => ReclaimablePagesBesides(null);

    /// <summary><see cref="ReclaimablePages"/> for a request about to pin <paramref name="id"/>: that adapter's own pages
    /// do not count even when it is resident and unpinned now, since pinning it takes them out of what can be freed.</summary>
    public int ReclaimablePagesBesides(string? id)
    {
        lock (_lock)
        {
            int pages = 0;
            foreach (var (key, e) in _entries)
                if (e.Resident is not null && e.Pins == 0 && key != id) pages += e.Pages;
            return pages;
        }
    }

    /// <summary>Makes the adapter resident in pool pages and pins it for a running request (call <see cref="Release"/>
    /// when the request leaves the batch). Evicts least recently used unpinned adapters if the pool needs room.
    /// Null when the pool cannot make room (everything else is pinned or held by KV); the caller should keep the
    /// request waiting. Engine loop thread.</summary>
    public AdapterResidency? EnsureResident(string id)
    {
        while (true)
        {
            Entry e;
            AdapterImage? adapter;
            lock (_lock)
            {
                e = Get(id);
                e.LastUsed = ++_tick;
                if (e.Resident is { } r)
                {
                    e.Pins++;
                    return r;
                }
                adapter = e.Host;
                if (adapter is not null) Touch(e);
            }
            adapter ??= LoadFromDisk(e.Folder, e.Pages); // the folder may have changed since registration: same checks
            lock (_lock)
            {
                // Read without the lock: the id may have been unregistered, or registered again with other weights,
                // meanwhile. What was read belongs to the entry it was read for, never to a newer one.
                if (!ReferenceEquals(Get(id), e)) continue;
                if (e.Host is null) PutInHostCache(e, adapter);
                if (e.Resident is null)
                {
                    if (!EvictUntilFree(e.Pages, except: e)) return null;
                    var r = AdapterResidency.TryCreate(_pool, id, _nextSlot++, adapter);
                    if (r is null) return null;
                    e.Resident = r;
                    _poolLoads++;
                }
                e.Pins++;
                return e.Resident;
            }
        }
    }

    /// <summary>Unpins an adapter made resident by <see cref="EnsureResident"/>; it stays in the pool until evicted.</summary>
    public void Release(AdapterResidency residency)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(residency.AdapterId, out var e) || !ReferenceEquals(e.Resident, residency) || e.Pins == 0)
                throw new InvalidOperationException($"adapter '{residency.AdapterId}' is not pinned by this residency");
            e.Pins--;
        }
    }

    /// <summary>Frees pool pages of unpinned adapters, least recently used first, until at least
    /// <paramref name="pages"/> pages are free (e.g. before the scheduler grows KV caches). Returns whether they are.</summary>
    public bool MakeRoom(int pages)
    {
        lock (_lock) return EvictUntilFree(pages, except: null);
    }

    /// <summary>Frees one adapter's pool pages if no running request pins it.</summary>
    public bool Evict(string id)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(id, out var e) || e.Resident is null || e.Pins > 0) return false;
            EvictFromPool(e);
            return true;
        }
    }

    /// <summary>Loads the given adapters into the host cache on the thread pool (those already in the pool or the
    /// host cache, and unknown ids, are skipped). The task completes when all are loaded; failures are counted in
    /// <see cref="AdapterMemoryMetrics.PrefetchFailures"/> and surface again at <see cref="EnsureResident"/>.</summary>
    public Task Prefetch(IEnumerable<string> ids)
    {
        var wanted = new List<Entry>();
        lock (_lock)
        {
            foreach (var id in ids.Distinct())
                if (_entries.TryGetValue(id, out var e) && e.Resident is null && e.Host is null) wanted.Add(e);
        }
        if (wanted.Count == 0) return Task.CompletedTask;
        return Task.Run(() =>
        {
            foreach (var e in wanted)
            {
                AdapterImage adapter;
                try { adapter = LoadFromDisk(e.Folder, e.Pages); }
                catch (Exception ex) when (ex is AdapterFormatException or IOException or UnauthorizedAccessException)
                {
                    Interlocked.Increment(ref _prefetchFailures);
                    continue;
                }
                lock (_lock)
                {
                    if (!e.Removed && e.Host is null) PutInHostCache(e, adapter);
                }
            }
        });
    }

    public AdapterMemoryMetrics Metrics()
    {
        var u = _pool.Usage;
        lock (_lock)
        {
            int inPool = 0;
            foreach (var e in _entries.Values) if (e.Resident is not null) inPool++;
            return new AdapterMemoryMetrics(
                new PoolUsageSnapshot(u.TotalPages, u.FreePages, u.KvPages, u.AdapterPages, u.PageBytes),
                _entries.Count, inPool, _hostLru.Count, _hostBytes, _options.HostCacheBytes,
                Interlocked.Read(ref _diskLoads), _poolLoads, _poolEvictions, _hostEvictions, Interlocked.Read(ref _prefetchFailures));
        }
    }

    /// <summary>Tests only: called before each read of an adapter folder (on the reading thread), so a test can hold a
    /// read in flight.</summary>
    internal Action<string>? BeforeRead;

    /// <summary>Reads and checks the folder and lays it out in pool pages. <paramref name="expectedPages"/> (-1: any): the
    /// pages the entry was registered with; an adapter whose configuration changed since then is refused.</summary>
    private AdapterImage LoadFromDisk(string folder, int expectedPages)
    {
        BeforeRead?.Invoke(folder);
        var image = AdapterImage.Build(PeftAdapter.Load(folder, _base, _validation), _pool.PageFloats, _options.PageFormat);
        Interlocked.Increment(ref _diskLoads);
        if (expectedPages >= 0 && image.PageCount != expectedPages)
            throw new AdapterFormatException(folder, $"the adapter changed on disk since it was registered (it takes {image.PageCount} pages, not {expectedPages})");
        return image;
    }

    private Entry Get(string id) =>
        _entries.TryGetValue(id, out var e) ? e : throw new KeyNotFoundException($"adapter '{id}' is not registered");

    private bool EvictUntilFree(int pages, Entry? except)
    {
        while (_pool.FreePages < pages)
        {
            Entry? victim = null;
            foreach (var e in _entries.Values)
                if (e.Resident is not null && e.Pins == 0 && e != except && (victim is null || e.LastUsed < victim.LastUsed))
                    victim = e;
            if (victim is null) return false;
            EvictFromPool(victim);
        }
        return true;
    }

    private void EvictFromPool(Entry e)
    {
        e.Resident!.Free();
        e.Resident = null;
        _poolEvictions++;
    }

    private void PutInHostCache(Entry e, AdapterImage adapter)
    {
        if (adapter.Bytes > _options.HostCacheBytes) return; // too big to cache: used transiently
        while (_hostBytes + adapter.Bytes > _options.HostCacheBytes && _hostLru.Last is { } last)
        {
            DropFromHostCache(last.Value);
            _hostEvictions++;
        }
        e.Host = adapter;
        e.HostNode = _hostLru.AddFirst(e);
        _hostBytes += adapter.Bytes;
    }

    private void DropFromHostCache(Entry e)
    {
        if (e.HostNode is null) return;
        _hostLru.Remove(e.HostNode);
        _hostBytes -= e.Host!.Bytes;
        e.HostNode = null;
        e.Host = null;
    }

    private void Touch(Entry e)
    {
        if (e.HostNode is null) return;
        _hostLru.Remove(e.HostNode);
        _hostLru.AddFirst(e.HostNode);
    }
}
