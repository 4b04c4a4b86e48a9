namespace Loom.Inference.Memory;

/// <summary>How an adapter's A and Bᵀ rows are kept in pool pages (and in its host copy), Inference:AdapterPageFormat.
/// F32: 4 bytes an element, each row from the start of its own page(s), as S-LoRA lays out its pages. Bf16: bfloat16, 2
/// bytes, rounded to nearest even when laid out (exact for an adapter saved in bf16, as PEFT writes one trained in bf16)
/// and widened exactly when the LoRA kernels read it; rows are cut as in f32 and the pieces packed, as many to a page as
/// fit, so an adapter takes about half the pages and a batch step reads half its bytes. The LoRA kernels over bf16 pages give bitwise what
/// they give over f32 pages holding the rounded values.</summary>
public enum AdapterPageFormat { F32, Bf16 }

/// <summary>How the rows of one matrix (A or Bᵀ of a module) lie in pages: each row is cut into <see cref="Chunks"/>
/// chunks of up to <see cref="ChunkElements"/> elements (the same cut in every format, so a kernel sums a row's chunks in
/// the same order whatever the format), and chunk c of row i takes slot i · Chunks + c of the matrix's slots,
/// <see cref="SlotsPerPage"/> slots of <see cref="SlotElements"/> elements to a page.</summary>
internal readonly record struct PageRows(int Chunks, int ChunkElements, int SlotsPerPage, int SlotElements)
{
    /// <summary>Pages <paramref name="rows"/> rows take.</summary>
    public int PagesFor(int rows) => (rows * Chunks + SlotsPerPage - 1) / SlotsPerPage;

    /// <summary>Index, among the matrix's pages, of chunk <paramref name="c"/> of row <paramref name="row"/>.</summary>
    public int Page(int row, int c) => SlotsPerPage == 1 ? row * Chunks + c : (row * Chunks + c) / SlotsPerPage;

    /// <summary>Element offset of chunk <paramref name="c"/> of row <paramref name="row"/> in its page.</summary>
    public int Offset(int row, int c) => SlotsPerPage == 1 ? 0 : (row * Chunks + c) % SlotsPerPage * SlotElements;
}

public static class AdapterPageFormats
{
    /// <summary>Bytes of one element.</summary>
    public static int ElementBytes(this AdapterPageFormat format) => format == AdapterPageFormat.Bf16 ? sizeof(ushort) : sizeof(float);

    /// <summary>The configuration spelling: "f32" or "bf16".</summary>
    public static string Name(this AdapterPageFormat format) => format == AdapterPageFormat.Bf16 ? "bf16" : "f32";

    /// <summary>How rows of <paramref name="length"/> elements lie in pages of <paramref name="pageFloats"/> float32 slots.
    /// A row is cut into chunks of pageFloats elements in either format. F32 gives each chunk its own page: the layout the
    /// GPU backend reads. Bf16 packs chunks, as many as fit, into pages of 2 · pageFloats elements, so a q_proj A row (in
    /// = hidden) takes half a page, a k_proj Bᵀ row of a 3:1 GQA model a sixth.</summary>
    internal static PageRows Rows(this AdapterPageFormat format, int length, int pageFloats)
    {
        int chunks = (length + pageFloats - 1) / pageFloats;
        if (format != AdapterPageFormat.Bf16) return new PageRows(chunks, pageFloats, 1, pageFloats);
        int slot = Math.Min(length, pageFloats);
        return new PageRows(chunks, pageFloats, 2 * pageFloats / slot, slot);
    }
}
