namespace Loom.Api.Limits;

/// <summary>
/// Bounds on what one upload may cost, bound from "Api:Uploads". With the defaults an adapter upload writes at
/// most MaxUploadBytes (the form's buffer) + MaxUploadBytes (a .zip's seekable copy; a .tar.gz streams) +
/// MaxDecompressedBytes (the unpacked folder) of temporary files, and memory stays within a few buffers whatever
/// the archive declares.
/// </summary>
public sealed class UploadOptions
{
    /// <summary>Total bytes unpacked from one archive (every entry read, wanted or not).</summary>
    public long MaxDecompressedBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Entries (files, folders, metadata records) in one archive.</summary>
    public int MaxArchiveEntries { get; set; } = 64;

    /// <summary>Size of a tar metadata record (PAX extended header, GNU long name), which a reader holds in memory.</summary>
    public int MaxTarMetadataBytes { get; set; } = 64 * 1024;

    /// <summary>adapter_config.json is read whole: a real one is a few hundred bytes.</summary>
    public int MaxAdapterConfigBytes { get; set; } = 64 * 1024;

    /// <summary>The JSON header of adapter_model.safetensors (a tensor table; an adapter's fits in kilobytes).</summary>
    public int MaxSafetensorsHeaderBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>One line of a JSONL training file (one example), bytes.</summary>
    public int MaxJsonlLineBytes { get; set; } = 1024 * 1024;

    /// <summary>Uploads of one tenant in flight at once; more get 429.</summary>
    public int MaxConcurrentPerTenant { get; set; } = 2;

    /// <summary>Bytes of adapters and files one tenant may keep; an upload past it gets 413.</summary>
    public long MaxStoredBytesPerTenant { get; set; } = 20L * 1024 * 1024 * 1024;
}
