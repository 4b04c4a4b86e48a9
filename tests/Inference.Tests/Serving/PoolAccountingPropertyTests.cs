using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Sampling;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Serving;

/// <summary>Random arrivals, adapters, lengths and cancellations (fixed seeds) on a pool small enough to force
/// preemption and adapter eviction: at every sampled moment and at the end, every page is free or owned, and once
/// all requests are done no KV page is left.</summary>
public sealed class PoolAccountingPropertyTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    /// <param name="swap">Three tenants arriving all at once, every preemption by swap (copies on the copy thread) and
    /// fairness preemption past a small gap; otherwise one tenant, arrivals spread out, and preemption by recompute.</param>
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(5, true)]
    [InlineData(6, true)]
    public async Task EveryPageIsFreeOrOwnedAfterAnyMixOfFinishedCancelledAndPreemptedRequests(int seed, bool swap)
    {
        // 400 pages: two rank-4 q/v adapters (32 pages each) and ~170 positions of KV
        var e = _h.Engine(o =>
        {
            o.PoolBytes = 400 * 256; o.TokenBudget = 24; o.MaxRunningSequences = 6;
            if (swap) { o.SwapMinTokens = 1; o.VtcFairnessGap = 8; }
            return o;
        });
        for (int i = 0; i < 4; i++) e.RegisterAdapter($"a{i}", _h.Adapter(4, [LoraTarget.QProj, LoraTarget.VProj], 40 + i));
        var rng = new Random(seed);
        int n = 30, cancelledBeforeStart = 0;
        var tasks = new List<Task<(bool Cancelled, List<GenerationEvent> Events, int MaxTokens)>>();
        using var auditStop = new CancellationTokenSource();
        var audits = Task.Run(async () =>
        {
            int count = 0;
            while (!auditStop.IsCancellationRequested)
            {
                Assert.Null(e.Pool.Audit());
                count++;
                await Task.Delay(1);
            }
            return count;
        });
        for (int i = 0; i < n; i++)
        {
            var r = new GenerationRequest
            {
                PromptTokenIds = Enumerable.Range(0, 2 + rng.Next(20)).Select(_ => rng.Next(320)).ToArray(),
                AdapterId = rng.Next(5) is int a && a < 4 ? $"a{a}" : null,
                TenantId = swap ? $"t{rng.Next(3)}" : null,
                Sampling = new SamplingParams { Seed = (ulong)i, MaxTokens = 1 + rng.Next(25), IgnoreEos = true },
            };
            int cancelAfter = rng.Next(3) == 0 ? rng.Next(6) : -1;   // a third are cancelled after 0-5 tokens
            if (cancelAfter == 0) cancelledBeforeStart++;             // these never reach the engine
            tasks.Add(Consume(e, r, cancelAfter));
            if (!swap) await Task.Delay(rng.Next(3)); // with swap: all at once, so that memory runs short
        }
        var results = await Task.WhenAll(tasks).WaitAsync(Limit);
        await Idle(e);
        auditStop.Cancel();
        Assert.True(await audits > 0);

        Assert.Null(e.Pool.Audit());
        var m = e.GetMetrics();
        Assert.Equal(0, m.Pool.KvPages);
        Assert.Equal(m.Pool.Pages, m.Pool.FreePages + m.Pool.AdapterPages + m.Pool.CachedPages); // (cached: prefix blocks kept)
        Assert.Null(e.AuditPrefixBlocks());
        Assert.Equal(0, m.Requests.Failed);
        if (swap) Assert.True(m.Scheduling.Swap.Preemptions > 0, $"no swap: {m}");
        Assert.Equal(n - cancelledBeforeStart, m.Requests.Finished + m.Requests.Cancelled);
        foreach (var (cancelled, events, maxTokens) in results)
        {
            if (cancelled) continue;
            Assert.True(events[^1].IsFinal);
            Assert.Equal(maxTokens, events[^1].Usage!.CompletionTokens);
            Assert.Equal(maxTokens, Tokens(events).Length);
        }
    }

    private static async Task<(bool, List<GenerationEvent>, int)> Consume(ServingEngine e, GenerationRequest r, int cancelAfter)
    {
        using var cts = new CancellationTokenSource();
        var events = new List<GenerationEvent>();
        try
        {
            if (cancelAfter == 0) cts.Cancel();
            await foreach (var ev in e.GenerateAsync(r, cts.Token))
            {
                events.Add(ev);
                if (events.Count == cancelAfter) cts.Cancel();
            }
            return (false, events, r.Sampling.MaxTokens);
        }
        catch (OperationCanceledException) { return (true, events, r.Sampling.MaxTokens); }
    }
}
