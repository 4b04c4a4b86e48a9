using Loom.Inference.Formats;

namespace Loom.Inference.Memory;

/// <summary>The host copy of an adapter in the pool's own layout: the page images it will take, in page-table order, with
/// Bᵀ already transposed, so loading it into pool pages is one straight copy per page (S-LoRA keeps its host copies the
/// same way). Built once per host-cache fill, off the engine loop (registration, prefetch); immutable afterwards.
/// Layout per module (layer by layer, target by target): the r rows of A (length in_features), then the r rows of Bᵀ
/// (length out_features), laid out as <see cref="Format"/> says (<see cref="AdapterPageFormats.Rows"/>: in float32 each
/// row from the start of its own ceil(length / PageFloats) pages, in bfloat16 the same chunks packed into pages); what a
/// page does not use is zero.</summary>
public sealed class AdapterImage
{
    private readonly float[] _pages; // (PageCount, PageFloats)

    internal LoraModuleLayout[] Modules { get; } // (Layers * LoraTargets.Count); rank 0: not targeted
    public int Layers { get; }
    public int Rank { get; }
    public float Scale { get; }
    public int PageFloats { get; }
    public int PageCount { get; }
    public AdapterPageFormat Format { get; }
    /// <summary>Host bytes the image holds (whole pages, tails included).</summary>
    public long Bytes => (long)_pages.Length * sizeof(float);

    private AdapterImage(float[] pages, LoraModuleLayout[] modules, int layers, int rank, float scale, int pageFloats, int pageCount,
        AdapterPageFormat format)
    {
        Format = format;
        _pages = pages;
        Modules = modules;
        Layers = layers;
        Rank = rank;
        Scale = scale;
        PageFloats = pageFloats;
        PageCount = pageCount;
    }

    /// <summary>Page <paramref name="index"/> of the image (PageFloats floats).</summary>
    public ReadOnlySpan<float> Page(int index) => _pages.AsSpan(checked(index * PageFloats), PageFloats);

    /// <summary>Pages an adapter of this configuration takes in a pool of <paramref name="pageFloats"/>-float pages: known
    /// from adapter_config.json alone, so registration need not read the weights.</summary>
    public static int PagesFor(PeftAdapterConfig config, Model.ModelConfig baseModel, int pageFloats, AdapterPageFormat format = AdapterPageFormat.F32)
    {
        long pages = 0;
        for (int l = 0; l < baseModel.NumLayers; l++)
        {
            if (!config.AppliesToLayer(l)) continue;
            foreach (var t in config.Targets)
            {
                var (inF, outF) = LoraTargets.Dims(baseModel, t);
                pages += format.Rows(inF, pageFloats).PagesFor(config.Rank) + format.Rows(outF, pageFloats).PagesFor(config.Rank);
            }
        }
        return checked((int)pages);
    }

    /// <summary>Pages the loaded adapter takes (the same count as <see cref="PagesFor(PeftAdapterConfig, Model.ModelConfig, int)"/>).</summary>
    public static int PagesFor(PeftAdapter adapter, int pageFloats, AdapterPageFormat format = AdapterPageFormat.F32)
    {
        long pages = 0;
        foreach (var m in adapter.Modules) pages += format.Rows(m.In, pageFloats).PagesFor(m.Rank) + format.Rows(m.Out, pageFloats).PagesFor(m.Rank);
        return checked((int)pages);
    }

    /// <summary>Lays the adapter out in page images for a pool of <paramref name="pageFloats"/>-float pages.</summary>
    public static AdapterImage Build(PeftAdapter adapter, int pageFloats, AdapterPageFormat format = AdapterPageFormat.F32)
    {
        int pf = pageFloats;
        var modules = new LoraModuleLayout[adapter.Layers * LoraTargets.Count];
        int offset = 0;
        foreach (var m in adapter.Modules)
        {
            int aPages = format.Rows(m.In, pf).PagesFor(m.Rank), bPages = format.Rows(m.Out, pf).PagesFor(m.Rank);
            modules[m.Layer * LoraTargets.Count + (int)m.Target] = new LoraModuleLayout(m.Rank, m.In, m.Out, offset, offset + aPages);
            offset += aPages + bPages;
        }
        var pages = new float[checked(offset * pf)];
        if (format == AdapterPageFormat.Bf16)
        {
            LayOutBf16(pages, adapter, modules, pf);
            return new AdapterImage(pages, modules, adapter.Layers, adapter.Config.Rank, adapter.Config.Scale, pf, offset, format);
        }
        foreach (var m in adapter.Modules)
        {
            var layout = modules[m.Layer * LoraTargets.Count + (int)m.Target];
            int aChunks = Chunks(m.In, pf), bChunks = Chunks(m.Out, pf);
            for (int i = 0; i < m.Rank; i++)
                for (int c = 0; c < aChunks; c++)
                {
                    int len = Math.Min(pf, m.In - c * pf);
                    m.A.AsSpan(i * m.In + c * pf, len).CopyTo(pages.AsSpan((layout.AOffset + i * aChunks + c) * pf, len));
                }
            // Bᵀ row i = column i of B, transposed in blocks of 16 outputs: the 16 rows of B a block reads stay in cache
            // across every i, and each row of Bᵀ gets 16 consecutive floats (one cache line) per block
            for (int c = 0; c < bChunks; c++)
            {
                int o0 = c * pf, len = Math.Min(pf, m.Out - o0);
                for (int ob = 0; ob < len; ob += 16)
                {
                    int oe = Math.Min(len, ob + 16);
                    for (int i = 0; i < m.Rank; i++)
                    {
                        int dst = (layout.BOffset + i * bChunks + c) * pf;
                        for (int o = ob; o < oe; o++) pages[dst + o] = m.B[(o0 + o) * m.Rank + i];
                    }
                }
            }
        }
        return new AdapterImage(pages, modules, adapter.Layers, adapter.Config.Rank, adapter.Config.Scale, pf, offset, format);
    }

    /// <summary>The bfloat16 layout: each element rounded to nearest even and put where <see cref="PageRows"/> says.</summary>
    private static void LayOutBf16(float[] pages, PeftAdapter adapter, LoraModuleLayout[] modules, int pf)
    {
        var elements = System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(pages.AsSpan());
        int perPage = 2 * pf;
        foreach (var m in adapter.Modules)
        {
            var layout = modules[m.Layer * LoraTargets.Count + (int)m.Target];
            PageRows ra = AdapterPageFormat.Bf16.Rows(m.In, pf), rb = AdapterPageFormat.Bf16.Rows(m.Out, pf);
            for (int i = 0; i < m.Rank; i++)
                for (int c = 0; c < ra.Chunks; c++)
                {
                    int k0 = c * ra.ChunkElements, len = Math.Min(ra.ChunkElements, m.In - k0);
                    int dst = (layout.AOffset + ra.Page(i, c)) * perPage + ra.Offset(i, c);
                    for (int k = 0; k < len; k++) elements[dst + k] = DTypeConvert.FloatToBFloat16(m.A[i * m.In + k0 + k]);
                }
            // Bᵀ row i = column i of B
            for (int i = 0; i < m.Rank; i++)
                for (int c = 0; c < rb.Chunks; c++)
                {
                    int o0 = c * rb.ChunkElements, len = Math.Min(rb.ChunkElements, m.Out - o0);
                    int dst = (layout.BOffset + rb.Page(i, c)) * perPage + rb.Offset(i, c);
                    for (int o = 0; o < len; o++) elements[dst + o] = DTypeConvert.FloatToBFloat16(m.B[(o0 + o) * m.Rank + i]);
                }
        }
    }

    private static int Chunks(int length, int pageFloats) => (length + pageFloats - 1) / pageFloats;
}
