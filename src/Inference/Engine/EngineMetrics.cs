using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

/// <summary>A snapshot of the engine, in groups: the unified pool, the adapter tiers, the loop and its queue, requests
/// by outcome, scheduling (preemption and swapping), prefix reuse, co-served training and, under the fair policy, each
/// tenant.</summary>
public sealed record EngineMetrics(
    PoolMetrics Pool, AdapterMetrics Adapters, LoopMetrics Loop, RequestMetrics Requests,
    SchedulingMetrics Scheduling, PrefixCacheMetrics Prefix, TrainingMetrics Training)
{
    /// <summary>Per tenant (VTC only): counter, share, waiting and running sequences, tokens served, preemptions.</summary>
    public IReadOnlyList<TenantServiceSnapshot> Tenants { get; init; } = [];
}

/// <summary>Pages of the unified pool by owner: <see cref="FreePages"/> + <see cref="KvPages"/> + <see cref="AdapterPages"/>
/// + <see cref="TrainingPages"/> + <see cref="CachedPages"/> = <see cref="Pages"/>, each of <see cref="PageBytes"/> bytes.
/// <see cref="CachedPages"/>: KV blocks of the prefix cache (shared by running sequences, or kept for later ones).</summary>
public sealed record PoolMetrics(int Pages, int FreePages, int KvPages, int AdapterPages, int TrainingPages, int PageBytes, int CachedPages = 0);

/// <summary>Adapters registered, in pool pages and in the host cache (its bytes and capacity); adapters copied into pool
/// pages (<see cref="Loads"/>), whose pool pages were freed to make room (<see cref="Evictions"/>) and adapter folders
/// read from disk (registration, host-cache misses, prefetch).</summary>
public sealed record AdapterMetrics(int Registered, int InPool, int InHostCache, long HostCacheBytes, long HostCacheCapacityBytes,
    long Loads, long Evictions, long DiskLoads);

/// <summary>Sequences running and waiting for admission; the last forward pass's sequences and tokens; iterations that
/// ran a batch, tokens run through the model (prompt and generated) and tokens sampled.</summary>
public sealed record LoopMetrics(int Running, int Waiting, int LastBatchSequences, int LastBatchTokens,
    long Iterations, long TokensComputed, long TokensGenerated);

/// <summary>Requests that left the engine, by outcome.</summary>
public sealed record RequestMetrics(long Finished, long Cancelled, long Failed);

/// <summary>The scheduling policy (Fcfs or Vtc); sequences preempted, of them for a less-served tenant (the rest for
/// memory); tokens dropped by preemption by recompute (computed again later); and the preemptions that swapped.</summary>
public sealed record SchedulingMetrics(string Policy, long Preemptions, long FairnessPreemptions, long RecomputeTokens, SwapMetrics Swap);

/// <summary>Preemptions whose KV cache was copied to host memory; the bytes copied out and back; time spent copying (on
/// the copy thread when <see cref="Async"/>) and time the loop stood waiting for copies (what the overlap did not hide).</summary>
public sealed record SwapMetrics(bool Async, long Preemptions, long BytesOut, long BytesIn, TimeSpan CopyTime, TimeSpan WaitTime);

/// <summary>Requests that started from cached KV blocks of the same tenant and adapter (prefix caching on pool pages), the
/// prompt tokens they did not compute, and the bytes of pool pages the cached blocks hold.</summary>
public sealed record PrefixCacheMetrics(long Hits, long TokensReused, long Bytes);

/// <summary>Training runs not yet ended and the tokens they trained.</summary>
public sealed record TrainingMetrics(int Runs, long TrainedTokens);
