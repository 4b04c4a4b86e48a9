using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Memory;

namespace Loom.Inference.Model.Gpu;

/// <summary>The device copy of a <see cref="PagePool"/>'s pages (PageCount, PageFloats), keyed by page index like the pool,
/// so a page table on the device addresses it as the host's does. Host → device: a page is uploaded when a batch first
/// reads it at its current allocation count (<see cref="PagePool.Generation"/>): the host writes a page only right after
/// allocating it (adapter load, KV swap-in, prefix restore); the uploads go on a copy stream that the forward pass waits
/// for before its first kernel (<see cref="WaitUploads"/>). Device → host: the keys and values the forward pass writes
/// stay on the device (this copy is the authoritative one for them) and come back only when the host is about to read
/// the pages (<see cref="ToHost"/>: swap-out), on a copy stream of their own, into the host pool's buffer page-locked once
/// where the accelerator allows it; they run under the next steps' kernels. Ordering: a copy is issued after the forward
/// pass that wrote its pages; the host reads the pages after waiting for the copy's ticket (<see cref="DeviceCopies"/>);
/// the pool hands a page out again only after the copies into it have landed (<see cref="Reusing"/>), so no upload, no
/// host write and no device write of the page's next owner can race with them (<see cref="PageCopyStreams"/>).</summary>
internal sealed unsafe class DevicePoolMirror : IDisposable, IDevicePages
{
    private readonly Accelerator _a;
    private readonly PagePool _pool;
    private readonly int[] _generation; // (PageCount) allocation count of the device copy; 0: never uploaded
    private readonly int[] _written;    // (PageCount) allocation count at which the device wrote rows the host lacks; 0: none
    private readonly long[] _copyTicket; // (PageCount) ticket of the last device → host copy into the page; 0: none
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _pages; // (PageCount, PageFloats)
    private readonly PageCopyStreams _copies;                       // uploads and device → host copies
    private PageLockScope<float>? _pinned;                          // the host pool's buffer, page-locked (null: not)

    public ArrayView<float> Pages => _pages.View;
    /// <summary>Pages uploaded host → device so far.</summary>
    public long Uploads { get; private set; }
    /// <summary>Pages copied device → host so far.</summary>
    public long Downloads { get; private set; }
    /// <summary>Whether the host pool's buffer is page-locked for the copies.</summary>
    public bool PageLocked => _pinned is not null;
    /// <summary>(Tests) copies run only when waited for: the latest an asynchronous stream may run them.</summary>
    internal bool LazyCopies { get => _copies.Lazy; set => _copies.Lazy = value; }

    private readonly DeviceTransfers? _transfers;

    public DevicePoolMirror(Accelerator a, PagePool pool, DeviceTransfers? transfers = null)
    {
        _transfers = transfers;
        if (pool.Device is not null) throw new NotSupportedException("a page pool has one device copy: a second GPU backend cannot share it");
        _a = a;
        _pool = pool;
        _generation = new int[pool.PageCount];
        _written = new int[pool.PageCount];
        _copyTicket = new long[pool.PageCount];
        _pages = a.Allocate1D<float>((long)pool.PageCount * pool.PageFloats);
        _copies = new PageCopyStreams(a);
        try { _pinned = a.CreatePageLockFromPinned<float>((nint)pool.Base, (long)pool.PageCount * pool.PageFloats); }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException or ArgumentException) { _pinned = null; } // pageable copies
        pool.Device = this;
    }

    public PagePool Pool => _pool;

    /// <summary>Issues the uploads of the pages of <paramref name="ids"/> whose device copy is older than the pool's (on the
    /// copy stream: <see cref="WaitUploads"/> before a kernel reads them). A page's allocation count moved, so any
    /// device → host copy of it has landed (<see cref="Reusing"/>) and the device no longer reads or writes it for its
    /// previous owner (the steps before this one are done).</summary>
    public void Sync(ReadOnlySpan<int> ids)
    {
        int pf = _pool.PageFloats;
        float* hostBase = _pool.Base;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i], g = _pool.Generation(id);
            if (_generation[id] == g) continue;
            // a run of consecutive stale page ids goes in one copy
            int end = i + 1;
            while (end < ids.Length && ids[end] == ids[end - 1] + 1 && _generation[ids[end]] != _pool.Generation(ids[end])) end++;
            int count = end - i;
            _copies.ToDevice(_pages.AsContiguous().SubView((long)id * pf), hostBase + (long)id * pf, (long)count * pf);
            for (int j = i; j < end; j++) _generation[ids[j]] = _pool.Generation(ids[j]);
            Uploads += count;
            i = end - 1;
        }
    }

    /// <summary>Waits for the uploads issued by <see cref="Sync"/> (the forward pass, before its first kernel).</summary>
    public void WaitUploads() => _copies.WaitUploads();

    /// <summary>The forward pass wrote rows of page <paramref name="id"/> on the device (after <see cref="Sync"/>).</summary>
    public void Written(int id) => _written[id] = _generation[id];

    /// <summary>Whether the device holds rows of page <paramref name="id"/> that the host lacks.</summary>
    public bool DeviceNewer(int id) => _written[id] != 0 && _written[id] == _pool.Generation(id);

    public DeviceCopies ToHost(ReadOnlySpan<int> ids)
    {
        int pf = _pool.PageFloats;
        float* hostBase = _pool.Base;
        bool synced = false;
        long wait = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if (!DeviceNewer(id))
            {
                wait = Math.Max(wait, _copyTicket[id]); // a copy of it issued earlier (a page two caches share) may be under way
                continue;
            }
            if (!synced)
            {
                _a.DefaultStream.Synchronize(); // the forward pass that wrote them is done (it is, between steps)
                synced = true;
            }
            int end = i + 1;
            while (end < ids.Length && ids[end] == ids[end - 1] + 1 && DeviceNewer(ids[end])) end++;
            int count = end - i;
            long ticket = _copies.ToHost(_pages.AsContiguous().SubView((long)id * pf), hostBase + (long)id * pf, (long)count * pf);
            for (int j = i; j < end; j++)
            {
                _written[ids[j]] = 0;
                Volatile.Write(ref _copyTicket[ids[j]], ticket);
            }
            wait = ticket;
            Downloads += count;
            _transfers?.Kv((long)count * pf * sizeof(float));
            i = end - 1;
        }
        return wait == 0 || _copies.Done(wait) ? default : new DeviceCopies(this, wait);
    }

    public void Wait(long ticket) => _copies.Wait(ticket);

    public void Reusing(ReadOnlySpan<int> ids)
    {
        if (!_copies.AnyInFlight) return;
        long wait = 0;
        foreach (int id in ids) wait = Math.Max(wait, Volatile.Read(ref _copyTicket[id]));
        if (wait != 0) _copies.Wait(wait);
    }

    public void Detach()
    {
        _copies.WaitAll(); // nothing may still copy into or out of the buffer when it is unlocked or freed
        _pinned?.Dispose();
        _pinned = null;
    }

    public void Dispose()
    {
        if (ReferenceEquals(_pool.Device, this)) _pool.Device = null;
        Detach();
        _copies.Dispose();
        _pages.Dispose();
    }
}
