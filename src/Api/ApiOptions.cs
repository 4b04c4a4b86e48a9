namespace Loom.Api;

/// <summary>Bound from configuration section "Api".</summary>
public sealed class ApiOptions
{
    /// <summary>Largest request body accepted under /v1 (bytes); larger bodies get 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Largest upload (POST /v1/files, /v1/adapters), bytes.</summary>
    public long MaxUploadBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Largest LoRA rank an uploaded adapter may have.</summary>
    public int MaxAdapterRank { get; set; } = 128;

    /// <summary>
    /// Where stored adapters are unpacked for the engine (one folder per adapter content hash, checked against it
    /// before serving). Empty: "adapters" beside the blob store's root, in the data directory.
    /// </summary>
    public string AdapterCacheDirectory { get; set; } = "";
}
