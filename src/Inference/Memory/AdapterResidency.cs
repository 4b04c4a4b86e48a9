using Loom.Inference.Formats;

namespace Loom.Inference.Memory;

/// <summary>A row-major (Rows, Cols) float32 matrix scattered over pool pages: row i, chunk c (Cols split into
/// pieces of PageFloats) lives at page Table[Offset + i * Chunks + c]. Plain data for the kernels.</summary>
public readonly unsafe struct PagedMatrix
{
    internal readonly float* Base;   // pool buffer (pages, PageFloats)
    internal readonly int[] Table;
    internal readonly int Offset;
    public readonly int PageFloats, Rows, Cols, Chunks;

    internal PagedMatrix(float* poolBase, int pageFloats, int[] table, int offset, int rows, int cols)
    {
        Base = poolBase;
        PageFloats = pageFloats;
        Table = table;
        Offset = offset;
        Rows = rows;
        Cols = cols;
        Chunks = (cols + pageFloats - 1) / pageFloats;
    }

    /// <summary>Start of chunk <paramref name="c"/> of row <paramref name="row"/>; it holds <see cref="ChunkLength"/> floats.</summary>
    internal float* Chunk(int row, int c) => Base + (long)Table[Offset + row * Chunks + c] * PageFloats;

    internal int ChunkLength(int c) => Math.Min(PageFloats, Cols - c * PageFloats);

    public float this[int row, int col] => Chunk(row, col / PageFloats)[col % PageFloats];
}

/// <summary>Where one LoRA module of a resident adapter lives in its page table. Rank 0: the module is not targeted.</summary>
internal readonly record struct LoraModuleLayout(int Rank, int In, int Out, int AOffset, int BOffset);

/// <summary>An adapter's weights in pool pages, with its page table. Layout per module: the r rows of A (length
/// in_features) and the r rows of Bᵀ (length out_features), each row taking ceil(length / PageFloats) pages, so with
/// PageFloats = hidden_size an A of q_proj takes exactly r pages (S-LoRA's layout) and down_proj's A (in =
/// intermediate_size) takes r · ceil(intermediate / hidden). The tail of a row's last page is unused. Stored as float32.
/// Created and freed by the adapter store; the kernels read it through <see cref="A"/> and <see cref="BT"/>.</summary>
public sealed unsafe class AdapterResidency
{
    private readonly PagePool _pool;
    private readonly int[] _pages;                 // (PageCount) page ids, module by module
    private readonly LoraModuleLayout[] _modules;  // (layers * LoraTargets.Count)
    private readonly int _layers;

    public string AdapterId { get; }
    public PageOwner Owner { get; }
    public int Rank { get; }
    public float Scale { get; }
    public int PageCount => _pages.Length;
    internal PagePool Pool => _pool;
    internal int Layers => _layers;
    /// <summary>(PageCount) page ids, module by module (see <see cref="Layout"/>).</summary>
    internal ReadOnlySpan<int> PageTable => _pages;
    /// <summary>Where a module lives in <see cref="PageTable"/>; rank 0 when the adapter does not target it.</summary>
    internal LoraModuleLayout Layout(int layer, LoraTarget target) =>
        (uint)layer < (uint)_layers ? _modules[layer * LoraTargets.Count + (int)target] : default;
    public bool IsFreed { get; private set; }

    private AdapterResidency(PagePool pool, string adapterId, int slot, AdapterImage image)
    {
        _pool = pool;
        _pages = new int[image.PageCount];
        _modules = image.Modules;
        _layers = image.Layers;
        AdapterId = adapterId;
        Owner = PageOwner.Adapter(slot);
        Rank = image.Rank;
        Scale = image.Scale;
    }

    /// <summary>Pages the adapter takes in a pool of <paramref name="pageFloats"/>-float pages.</summary>
    public static int PagesFor(PeftAdapter adapter, int pageFloats) => AdapterImage.PagesFor(adapter, pageFloats);

    /// <summary>Lays the adapter out (<see cref="AdapterImage.Build"/>) and copies it in; null (nothing taken) if the pool
    /// lacks room.</summary>
    public static AdapterResidency? TryCreate(PagePool pool, string adapterId, int slot, PeftAdapter adapter) =>
        TryCreate(pool, adapterId, slot, AdapterImage.Build(adapter, pool.PageFloats));

    /// <summary>Allocates the image's pages and copies it in, one straight copy per page; null (nothing taken) if the
    /// pool lacks room.</summary>
    public static AdapterResidency? TryCreate(PagePool pool, string adapterId, int slot, AdapterImage image)
    {
        if (image.PageFloats != pool.PageFloats)
            throw new ArgumentException($"the image was laid out for pages of {image.PageFloats} floats, the pool's hold {pool.PageFloats}", nameof(image));
        var r = new AdapterResidency(pool, adapterId, slot, image);
        if (!pool.TryAllocate(r.Owner, r._pages)) return null;
        float* poolBase = pool.Base;
        int pf = pool.PageFloats;
        for (int j = 0; j < r._pages.Length; j++)
            image.Page(j).CopyTo(new Span<float>(poolBase + (long)r._pages[j] * pf, pf));
        return r;
    }

    /// <summary>Whether the adapter has a LoRA pair at this module.</summary>
    public bool Targets(int layer, LoraTarget target) =>
        (uint)layer < (uint)_layers && _modules[layer * LoraTargets.Count + (int)target].Rank > 0;

    /// <summary>(Rank, In) lora_A of one module, in pages.</summary>
    public PagedMatrix A(int layer, LoraTarget target)
    {
        var m = Module(layer, target);
        return new PagedMatrix(_pool.Base, _pool.PageFloats, _pages, m.AOffset, m.Rank, m.In);
    }

    /// <summary>(Rank, Out) lora_B transposed, in pages.</summary>
    public PagedMatrix BT(int layer, LoraTarget target)
    {
        var m = Module(layer, target);
        return new PagedMatrix(_pool.Base, _pool.PageFloats, _pages, m.BOffset, m.Rank, m.Out);
    }

    private LoraModuleLayout Module(int layer, LoraTarget target)
    {
        ObjectDisposedException.ThrowIf(IsFreed, this);
        if (!Targets(layer, target)) throw new ArgumentException($"adapter '{AdapterId}' has no {LoraTargets.Name(target)} at layer {layer}");
        return _modules[layer * LoraTargets.Count + (int)target];
    }

    /// <summary>Returns the pages to the pool; the handle is dead afterwards.</summary>
    internal void Free()
    {
        if (IsFreed) return;
        _pool.Free(Owner, _pages);
        IsFreed = true;
    }
}
