using System.Collections.Concurrent;
using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Loom.Inference.Scheduling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Fairness;

/// <summary>The serving engine under VTC (its default) and FCFS: a tenant arriving behind another tenant's flood is
/// served ahead of most of it; per-tenant counters in the metrics; fairness preemption leaves outputs unchanged.</summary>
public sealed class EngineFairnessTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Request(string tenant, int seed, int tokens = 12, int priority = 0) => new()
    {
        PromptTokenIds = Enumerable.Range(0, 6).Select(i => (seed * 31 + i * 7) % 320).ToArray(),
        TenantId = tenant,
        Priority = priority,
        Sampling = new SamplingParams { Seed = (ulong)seed, MaxTokens = tokens, IgnoreEos = true, Temperature = 0.8f },
    };

    /// <summary>Ten flood requests queue behind a running limit of two, then two from a quiet tenant arrive: the order
    /// in which the twelve finish.</summary>
    private async Task<List<string>> FinishOrder(ServingEngine e)
    {
        var order = new ConcurrentQueue<string>();
        var tasks = new List<Task>();
        async Task Go(GenerationRequest r)
        {
            await Run(e, r);
            order.Enqueue(r.TenantId!);
        }
        for (int i = 0; i < 10; i++) tasks.Add(Go(Request("flood", i)));
        var deadline = DateTime.UtcNow + Limit;
        while (e.GetMetrics().Waiting < 6)
        {
            Assert.True(DateTime.UtcNow < deadline, "the flood never queued");
            await Task.Delay(1);
        }
        for (int i = 0; i < 2; i++) tasks.Add(Go(Request("quiet", 100 + i)));
        await Task.WhenAll(tasks).WaitAsync(Limit);
        return [.. order];
    }

    [Fact]
    public async Task UnderVtcAQuietTenantIsServedAheadOfAFloodThatArrivedFirstAndUnderFcfsItIsNot()
    {
        var vtc = _h.Engine(o => { o.MaxRunningSequences = 2; return o; });
        var order = await FinishOrder(vtc);
        // The quiet tenant arrives when at most four flood requests have been admitted. Under VTC it is lifted to the
        // flood's counter and wins the next free slots, so both its requests finish among the first nine of twelve
        // (exactly where depends on how far the engine got before they arrived); under FCFS they finish last.
        int lastQuiet = order.LastIndexOf("quiet");
        Assert.True(lastQuiet <= 8, $"VTC finish order: {string.Join(",", order)}");

        var fcfs = _h.Engine(o => { o.MaxRunningSequences = 2; o.SchedulingPolicy = SchedulingPolicyKind.Fcfs; return o; });
        var fcfsOrder = await FinishOrder(fcfs);
        Assert.True(fcfsOrder.IndexOf("quiet") >= 9, $"FCFS finish order: {string.Join(",", fcfsOrder)}");
        Assert.Equal("Fcfs", fcfs.GetMetrics().SchedulingPolicy);
        Assert.Empty(fcfs.GetMetrics().Tenants);
    }

    [Fact]
    public async Task MetricsCarryPerTenantCountersSharesAndTokens()
    {
        var e = _h.Engine();
        var a = Request("a", 1, tokens: 5);
        var b = Request("b", 2, tokens: 3) with { TenantShare = 2 };
        await Run(e, a);
        await Run(e, b);
        await Idle(e);
        var m = e.GetMetrics();
        Assert.Equal("Vtc", m.SchedulingPolicy);
        var ta = m.Tenants.Single(t => t.TenantId == "a");
        var tb = m.Tenants.Single(t => t.TenantId == "b");
        // a: 6 prompt + 2 x 5 generated; b: lifted to a's counter on arrival (nothing else was backlogged), then (6 + 2 x 3) / 2
        Assert.Equal((6L, 5L, 16.0), (ta.InputTokens, ta.OutputTokens, ta.Counter));
        Assert.Equal((6L, 3L, 2.0), (tb.InputTokens, tb.OutputTokens, tb.Share));
        Assert.Equal(16 + 6, tb.Counter);
        Assert.All(m.Tenants, t => Assert.Equal((0, 0), (t.Waiting, t.Running)));
        await Assert.ThrowsAsync<ArgumentException>(async () => await Run(e, a with { TenantShare = 0 }));
        await Assert.ThrowsAsync<ArgumentException>(async () => await Run(e, a with { TenantShare = double.NaN }));
    }

    [Fact]
    public async Task FairnessPreemptionByRecomputeLeavesEveryOutputAsAnUnpreemptedRun()
    {
        // alone, one at a time: the reference outputs
        var solo = _h.Engine(o => { o.MaxRunningSequences = 1; return o; });
        // the flood's sequences are long enough that none ends while the quiet tenant waits behind them
        var requests = Enumerable.Range(0, 6).Select(i => Request("flood", i, tokens: 40))
            .Concat(Enumerable.Range(0, 3).Select(i => Request("quiet", 50 + i, tokens: 16))).ToArray();
        var expected = new List<int[]>();
        foreach (var r in requests) expected.Add(Tokens(await Run(solo, r)));

        // shared, with a tiny fairness gap: the flood's running sequences are preempted for the quiet tenant
        var e = _h.Engine(o => { o.MaxRunningSequences = 3; o.VtcFairnessGap = 4; return o; });
        var flood = requests.Take(6).Select(r => Run(e, r)).ToArray();
        var deadline = DateTime.UtcNow + Limit;
        while (e.GetMetrics() is { Running: < 3 } or { TokensGenerated: < 6 })
        {
            Assert.True(DateTime.UtcNow < deadline, "the flood never ran");
            await Task.Delay(1);
        }
        var quiet = requests.Skip(6).Select(r => Run(e, r)).ToArray();
        var outputs = await Task.WhenAll(flood.Concat(quiet)).WaitAsync(Limit);
        var m = e.GetMetrics();
        Assert.True(m.FairnessPreemptions > 0, $"no fairness preemption: {m}");
        Assert.True(m.Tenants.Single(t => t.TenantId == "flood").Preemptions > 0);
        for (int i = 0; i < requests.Length; i++) Assert.Equal(expected[i], Tokens(outputs[i]));
    }
}
