using System.Diagnostics;
using Loom.Inference.Adapters;
using Loom.Inference.Scheduling;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine
{
    /// <summary>The loop's counters: written on the loop thread, read by <see cref="GetMetrics"/> from any thread.</summary>
    private struct Counters
    {
        public int Running, Waiting, LastBatchSequences, LastBatchTokens;
        public long SwapWaitTicks, StepTicks, IdleTicks;
        public long Iterations, TokensComputed, TokensGenerated, Preemptions, FairnessPreemptions, RecomputeTokens, Finished, Cancelled, Failed;
    }

    public EngineMetrics GetMetrics()
    {
        var m = _store.Metrics();
        var p = m.Pool;
        if (!Unified)
        {
            var kv = _pool.Usage;
            p = new PoolUsageSnapshot(p.TotalPages + kv.TotalPages, p.FreePages + kv.FreePages, kv.KvPages, p.AdapterPages, p.PageBytes);
        }
        var training = TrainingCounters;
        return new EngineMetrics(
            new PoolMetrics(p.TotalPages, p.FreePages, p.KvPages, p.AdapterPages, _pool.Usage.TrainingPages, p.PageBytes, _pool.Usage.CachedPages),
            new AdapterMetrics(m.Registered, m.AdaptersInPool, m.AdaptersInHostCache, m.HostCacheBytes, m.HostCacheCapacityBytes,
                m.PoolLoads, m.PoolEvictions, m.DiskLoads),
            new LoopMetrics(Volatile.Read(ref _c.Running), Volatile.Read(ref _c.Waiting), Volatile.Read(ref _c.LastBatchSequences),
                Volatile.Read(ref _c.LastBatchTokens), Interlocked.Read(ref _c.Iterations), Interlocked.Read(ref _c.TokensComputed),
                Interlocked.Read(ref _c.TokensGenerated)),
            new RequestMetrics(Interlocked.Read(ref _c.Finished), Interlocked.Read(ref _c.Cancelled), Interlocked.Read(ref _c.Failed)),
            new SchedulingMetrics(PolicyName, Interlocked.Read(ref _c.Preemptions), Interlocked.Read(ref _c.FairnessPreemptions),
                Interlocked.Read(ref _c.RecomputeTokens),
                new SwapMetrics(_options.AsyncSwap, _swap?.SwapOuts ?? 0, _swap?.BytesOut ?? 0, _swap?.BytesIn ?? 0,
                    _swap?.CopyTime ?? TimeSpan.Zero, Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _c.SwapWaitTicks)))),
            new PrefixCacheMetrics(_blocks?.Hits ?? 0, _blocks?.TokensReused ?? 0, (long)_pool.Usage.CachedPages * _pool.PageBytes),
            new TrainingMetrics(training.Runs, training.TrainedTokens))
        {
            Tenants = (_policy as VtcPolicy)?.Snapshot() ?? [],
        };
    }

    private string PolicyName => _policy switch
    {
        VtcPolicy => nameof(SchedulingPolicyKind.Vtc),
        FcfsPolicy => nameof(SchedulingPolicyKind.Fcfs),
        _ => _policy.GetType().Name,
    };
}
