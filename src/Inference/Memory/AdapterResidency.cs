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
    public bool IsFreed { get; private set; }

    private AdapterResidency(PagePool pool, string adapterId, int slot, PeftAdapter adapter, LoraModuleLayout[] modules, int pages)
    {
        _pool = pool;
        _pages = new int[pages];
        _modules = modules;
        _layers = adapter.Layers;
        AdapterId = adapterId;
        Owner = PageOwner.Adapter(slot);
        Rank = adapter.Config.Rank;
        Scale = adapter.Config.Scale;
    }

    /// <summary>Pages the adapter takes in a pool of <paramref name="pageFloats"/>-float pages.</summary>
    public static int PagesFor(PeftAdapter adapter, int pageFloats)
    {
        long pages = 0;
        foreach (var m in adapter.Modules)
            pages += (long)m.Rank * ((m.In + pageFloats - 1) / pageFloats + (m.Out + pageFloats - 1) / pageFloats);
        return checked((int)pages);
    }

    /// <summary>Allocates the adapter's pages and copies its weights in; null (nothing taken) if the pool lacks room.</summary>
    public static AdapterResidency? TryCreate(PagePool pool, string adapterId, int slot, PeftAdapter adapter)
    {
        int pf = pool.PageFloats;
        var modules = new LoraModuleLayout[adapter.Layers * LoraTargets.Count];
        int offset = 0;
        foreach (var m in adapter.Modules)
        {
            int aPages = m.Rank * ((m.In + pf - 1) / pf), bPages = m.Rank * ((m.Out + pf - 1) / pf);
            modules[m.Layer * LoraTargets.Count + (int)m.Target] = new LoraModuleLayout(m.Rank, m.In, m.Out, offset, offset + aPages);
            offset += aPages + bPages;
        }
        var r = new AdapterResidency(pool, adapterId, slot, adapter, modules, offset);
        if (!pool.TryAllocate(r.Owner, r._pages)) return null;
        foreach (var m in adapter.Modules)
        {
            var a = r.A(m.Layer, m.Target);
            var bt = r.BT(m.Layer, m.Target);
            for (int i = 0; i < m.Rank; i++)
            {
                for (int c = 0; c < a.Chunks; c++)
                    m.A.AsSpan(i * m.In + c * pf, a.ChunkLength(c)).CopyTo(new Span<float>(a.Chunk(i, c), a.ChunkLength(c)));
            }
            // Bᵀ row i = column i of B, transposed in blocks of 16 outputs: the 16 rows of B a block reads stay in cache
            // across every i, and each row of Bᵀ gets 16 consecutive floats (one cache line) per block
            for (int c = 0; c < bt.Chunks; c++)
            {
                int o0 = c * pf, len = bt.ChunkLength(c);
                for (int ob = 0; ob < len; ob += 16)
                {
                    int oe = Math.Min(len, ob + 16);
                    for (int i = 0; i < m.Rank; i++)
                    {
                        float* dst = bt.Chunk(i, c);
                        for (int o = ob; o < oe; o++) dst[o] = m.B[(o0 + o) * m.Rank + i];
                    }
                }
            }
        }
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
