using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Memory;

namespace Loom.Inference.Model.Gpu;

/// <summary>A device copy of a <see cref="PagePool"/>'s pages (PageCount, PageFloats), keyed by page index like the pool,
/// so a page table on the device addresses it as the host's does. A page is uploaded when a batch first reads it at its
/// current allocation count (<see cref="PagePool.Generation"/>): the host writes a page only right after allocating it
/// (adapter load, KV swap-in, prefix restore), and the rows the forward pass writes are written on both sides.</summary>
internal sealed unsafe class DevicePoolMirror : IDisposable
{
    private readonly PagePool _pool;
    private readonly int[] _generation; // (PageCount) allocation count of the device copy; 0: never uploaded
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _pages; // (PageCount, PageFloats)

    public ArrayView<float> Pages => _pages.View;
    public long Uploads { get; private set; }

    public DevicePoolMirror(Accelerator a, PagePool pool)
    {
        _pool = pool;
        _generation = new int[pool.PageCount];
        _pages = a.Allocate1D<float>((long)pool.PageCount * pool.PageFloats);
    }

    public PagePool Pool => _pool;

    /// <summary>Uploads the pages of <paramref name="ids"/> whose device copy is older than the pool's.</summary>
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
            _pages.AsContiguous().SubView((long)id * pf, (long)count * pf).CopyFromCPU(ref *(hostBase + (long)id * pf), (long)count * pf);
            for (int j = i; j < end; j++) _generation[ids[j]] = _pool.Generation(ids[j]);
            Uploads += count;
            i = end - 1;
        }
    }

    public void Dispose() => _pages.Dispose();
}
