using Loom.Inference.Formats;

namespace Loom.Inference.Memory;

/// <summary>A row-major (Rows, Cols) matrix scattered over pool pages, its elements float32 or bfloat16
/// (<see cref="AdapterPageFormat"/>): chunk c of row i (Cols cut into pieces of <see cref="ChunkElements"/>) lives in page
/// Table[Offset + Layout.Page(i, c)], from element Layout.Offset(i, c) of it. Plain data for the kernels.</summary>
public readonly unsafe struct PagedMatrix
{
    internal readonly byte* Base;   // pool buffer (pages of PageBytes)
    internal readonly int[] Table;
    internal readonly int Offset;
    internal readonly int PageBytes;
    internal readonly PageRows Layout;
    public readonly int Rows, Cols;
    public readonly AdapterPageFormat Format;

    internal PagedMatrix(float* poolBase, int pageFloats, int[] table, int offset, int rows, int cols, AdapterPageFormat format = AdapterPageFormat.F32)
    {
        Base = (byte*)poolBase;
        PageBytes = pageFloats * sizeof(float);
        Table = table;
        Offset = offset;
        Rows = rows;
        Cols = cols;
        Format = format;
        Layout = format.Rows(cols, pageFloats);
    }

    /// <summary>Chunks per row.</summary>
    public int Chunks => Layout.Chunks;

    /// <summary>Elements of a whole chunk: chunk c holds columns [c · ChunkElements, c · ChunkElements + ChunkLength(c)).</summary>
    public int ChunkElements => Layout.ChunkElements;

    /// <summary>Start of chunk <paramref name="c"/> of row <paramref name="row"/>; it holds <see cref="ChunkLength"/>
    /// elements in <see cref="Format"/>.</summary>
    internal byte* Chunk(int row, int c) =>
        Base + (long)Table[Offset + Layout.Page(row, c)] * PageBytes + (long)Layout.Offset(row, c) * Format.ElementBytes();

    internal int ChunkLength(int c) => Math.Min(Layout.ChunkElements, Cols - c * Layout.ChunkElements);

    /// <summary>Element (row, col), widened to float32.</summary>
    public float this[int row, int col]
    {
        get
        {
            byte* chunk = Chunk(row, col / Layout.ChunkElements);
            int i = col % Layout.ChunkElements;
            return Format == AdapterPageFormat.Bf16 ? BitConverter.Int32BitsToSingle(((ushort*)chunk)[i] << 16) : ((float*)chunk)[i];
        }
    }
}

/// <summary>Where one LoRA module of a resident adapter lives in its page table. Rank 0: the module is not targeted.</summary>
internal readonly record struct LoraModuleLayout(int Rank, int In, int Out, int AOffset, int BOffset);

/// <summary>An adapter's weights in pool pages, with its page table. Layout per module: the r rows of A (length
/// in_features) and the r rows of Bᵀ (length out_features). In float32 each row takes ceil(length / PageFloats) pages, so
/// with PageFloats = hidden_size an A of q_proj takes exactly r pages (S-LoRA's layout) and down_proj's A (in =
/// intermediate_size) takes r · ceil(intermediate / hidden); the tail of a row's last page is unused. In bfloat16 the same
/// chunks are packed into pages (<see cref="AdapterPageFormats.Rows"/>).
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
    /// <summary>How A and Bᵀ are stored in the pages.</summary>
    public AdapterPageFormat Format { get; }
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
        Format = image.Format;
    }

    /// <summary>Pages the adapter takes in a pool of <paramref name="pageFloats"/>-float pages.</summary>
    public static int PagesFor(PeftAdapter adapter, int pageFloats, AdapterPageFormat format = AdapterPageFormat.F32) =>
        AdapterImage.PagesFor(adapter, pageFloats, format);

    /// <summary>Lays the adapter out (<see cref="AdapterImage.Build"/>) and copies it in; null (nothing taken) if the pool
    /// lacks room.</summary>
    public static AdapterResidency? TryCreate(PagePool pool, string adapterId, int slot, PeftAdapter adapter,
        AdapterPageFormat format = AdapterPageFormat.F32) =>
        TryCreate(pool, adapterId, slot, AdapterImage.Build(adapter, pool.PageFloats, format));

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
        return new PagedMatrix(_pool.Base, _pool.PageFloats, _pages, m.AOffset, m.Rank, m.In, Format);
    }

    /// <summary>(Rank, Out) lora_B transposed, in pages.</summary>
    public PagedMatrix BT(int layer, LoraTarget target)
    {
        var m = Module(layer, target);
        return new PagedMatrix(_pool.Base, _pool.PageFloats, _pages, m.BOffset, m.Rank, m.Out, Format);
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
