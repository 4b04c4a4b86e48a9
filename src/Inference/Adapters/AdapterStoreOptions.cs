namespace Loom.Inference.Adapters;

/// <summary>Limits of the adapter store.</summary>
public sealed class AdapterStoreOptions
{
    /// <summary>Largest LoRA rank accepted at registration.</summary>
    public int MaxRank { get; set; } = 128;
    /// <summary>Bytes of adapters kept in host memory as page images (whole pages), least recently used dropped first.</summary>
    public long HostCacheBytes { get; set; } = 1L << 30;
    /// <summary>How A and Bᵀ are kept in pool pages and host copies (Inference:AdapterPageFormat).</summary>
    public Memory.AdapterPageFormat PageFormat { get; set; } = Memory.AdapterPageFormat.F32;
    /// <summary>When set, adapters whose base_model_name_or_path names another model are refused.</summary>
    public string? BaseModelName { get; set; }
}

/// <summary>A snapshot of the unified pool and the adapter caches.</summary>
/// <param name="Pool">Pages used by KV, by adapters, and free.</param>
/// <param name="DiskLoads">Adapter folders read from disk (registration, host-cache misses, prefetch).</param>
/// <param name="PoolLoads">Adapters copied into pool pages.</param>
/// <param name="PoolEvictions">Adapters whose pool pages were freed to make room.</param>
/// <param name="HostEvictions">Adapters dropped from the host cache to stay within its byte limit.</param>
public sealed record AdapterMemoryMetrics(
    PoolUsageSnapshot Pool,
    int Registered,
    int AdaptersInPool,
    int AdaptersInHostCache,
    long HostCacheBytes,
    long HostCacheCapacityBytes,
    long DiskLoads,
    long PoolLoads,
    long PoolEvictions,
    long HostEvictions,
    long PrefetchFailures);

/// <summary>Page counts of the unified pool.</summary>
public sealed record PoolUsageSnapshot(int TotalPages, int FreePages, int KvPages, int AdapterPages, int PageBytes);
