using System.Collections.Concurrent;
using Loom.Inference.Engine;
using Loom.Inference.Memory;
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

    /// <summary>Ten flood requests arrive at an engine with a running limit of two; after one iteration (two admitted,
    /// eight waiting) two requests from a quiet tenant arrive: the order in which the twelve finish.</summary>
    private static async Task<List<string>> FinishOrder(ServingEngine e)
    {
        e.Steps = new SemaphoreSlim(0);
        var order = new ConcurrentQueue<string>();
        var tasks = new List<Task>();
        async Task Go(GenerationRequest r)
        {
            await Run(e, r);
            order.Enqueue(r.TenantId!);
        }
        Task Queued(int n) => Until(() => e.ArrivalsQueued >= n, () => $"{e.ArrivalsQueued} of {n} requests reached the engine");
        for (int i = 0; i < 10; i++) tasks.Add(Go(Request("flood", i)));
        await Queued(10);
        e.Steps.Release(); // one iteration: the flood arrives, two of it are admitted and run
        await Until(() => e.GetMetrics() is { Loop: { Running: 2, Waiting: 8, Iterations: 1 } }, () => $"the flood never queued: {e.GetMetrics()}");
        for (int i = 0; i < 2; i++) tasks.Add(Go(Request("quiet", 100 + i)));
        await Queued(2);
        e.Steps.Release(int.MaxValue / 2);
        await Task.WhenAll(tasks).WaitAsync(Limit);
        return [.. order];
    }

    [Fact]
    public async Task UnderVtcAQuietTenantIsServedAheadOfAFloodThatArrivedFirstAndUnderFcfsItIsNot()
    {
        var vtc = _h.Engine(o => { o.MaxRunningSequences = 2; return o; });
        var order = await FinishOrder(vtc);
        // Under VTC the quiet tenant is lifted to the flood's counter when it arrives, the flood's counter grows with
        // each of its decodes, so the quiet tenant wins the next two slots: its requests finish right after the two
        // flood requests that were running. Under FCFS they finish last.
        Assert.True(order.LastIndexOf("quiet") <= 3, $"VTC finish order: {string.Join(",", order)}");

        var fcfs = _h.Engine(o => { o.MaxRunningSequences = 2; o.SchedulingPolicy = SchedulingPolicyKind.Fcfs; return o; });
        var fcfsOrder = await FinishOrder(fcfs);
        Assert.True(fcfsOrder.IndexOf("quiet") >= 9, $"FCFS finish order: {string.Join(",", fcfsOrder)}");
        Assert.Equal("Fcfs", fcfs.GetMetrics().Scheduling.Policy);
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
        Assert.Equal("Vtc", m.Scheduling.Policy);
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

    /// <summary>The flood and quiet requests of <see cref="FloodThenQuiet"/>: six long ones from the flood, three from a
    /// quiet tenant.</summary>
    private static GenerationRequest[] FloodAndQuiet(int floodTokens = 40) =>
        Enumerable.Range(0, 6).Select(i => Request("flood", i, tokens: floodTokens))
            .Concat(Enumerable.Range(0, 3).Select(i => Request("quiet", 50 + i, tokens: 16))).ToArray();

    /// <summary>Sends the six flood requests, lets the engine run three iterations (three sequences at a time), then
    /// sends the three quiet ones and lets the engine run freely (<paramref name="runFreely"/> false: leaves it waiting
    /// for the caller's <see cref="ServingEngine.Steps"/>).</summary>
    private static async Task<(Task<List<GenerationEvent>>[] Flood, Task<List<GenerationEvent>>[] Quiet)> StartFloodThenQuiet(
        ServingEngine e, CancellationToken floodToken = default, int floodTokens = 40, bool runFreely = true)
    {
        var requests = FloodAndQuiet(floodTokens);
        e.Steps = new SemaphoreSlim(0);
        var flood = requests.Take(6).Select(r => Run(e, r, floodToken)).ToArray();
        await Until(() => e.ArrivalsQueued >= 6, () => "the flood never reached the engine");
        e.Steps.Release(3);
        await Until(() => e.GetMetrics() is { Loop: { Iterations: 3, Running: 3 } }, () => $"the flood never ran: {e.GetMetrics()}");
        var quiet = requests.Skip(6).Select(r => Run(e, r)).ToArray();
        await Until(() => e.ArrivalsQueued >= 3, () => "the quiet tenant never reached the engine");
        if (runFreely) e.Steps.Release(int.MaxValue / 2);
        return (flood, quiet);
    }

    /// <summary><see cref="StartFloodThenQuiet"/> to the end, with the outputs each request gives alone, one at a time.
    /// <paramref name="stepUntil"/>: the loop runs one iteration at a time until it holds, then freely.</summary>
    private async Task<(List<GenerationEvent>[] Outputs, List<int[]> Expected)> FloodThenQuiet(ServingEngine e, Func<bool>? stepUntil = null)
    {
        var solo = _h.Engine(o => { o.MaxRunningSequences = 1; return o; });
        var expected = new List<int[]>();
        foreach (var r in FloodAndQuiet()) expected.Add(Tokens(await Run(solo, r)));
        var (flood, quiet) = await StartFloodThenQuiet(e, runFreely: stepUntil is null);
        if (stepUntil is not null)
        {
            await StepUntil(e, stepUntil);
            e.Steps!.Release(int.MaxValue / 2);
        }
        return (await Task.WhenAll(flood.Concat(quiet)).WaitAsync(Limit), expected);
    }

    /// <summary>Lets the loop (waiting for <see cref="ServingEngine.Steps"/>) run one iteration at a time until
    /// <paramref name="done"/> holds: what a swap copy, started on the copy thread, may find depends on nothing else
    /// then. (Run freely, the loop can finish every sequence it may run before a loaded machine starts the copy.)</summary>
    private static async Task StepUntil(ServingEngine e, Func<bool> done)
    {
        var steps = e.Steps!;
        var deadline = DateTime.UtcNow + Limit;
        while (!done())
        {
            Assert.True(DateTime.UtcNow < deadline, $"never came to pass while stepping: {e.GetMetrics()}");
            steps.Release();
            await Until(() => steps.CurrentCount == 0 || done(), () => $"the loop stopped: {e.GetMetrics()}");
        }
    }

    [Fact]
    public async Task FairnessPreemptionByRecomputeLeavesEveryOutputAsAnUnpreemptedRun()
    {
        // a tiny fairness gap: the flood's running sequences are preempted for the quiet tenant
        var e = _h.Engine(o => { o.MaxRunningSequences = 3; o.VtcFairnessGap = 4; return o; });
        var (outputs, expected) = await FloodThenQuiet(e);
        var m = e.GetMetrics();
        Assert.True(m.Scheduling.FairnessPreemptions > 0, $"no fairness preemption: {m}");
        Assert.True(m.Tenants.Single(t => t.TenantId == "flood").Preemptions > 0);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], Tokens(outputs[i]));
    }

    [Fact]
    public async Task SwapCopiesRunOffTheEngineThreadAndPagesAreFreedOnlyOnceCopied()
    {
        // fairness preemptions swap (SwapMinTokens 1); the first copy out is held until the engine has run on
        var e = _h.Engine(o => { o.MaxRunningSequences = 3; o.VtcFairnessGap = 4; o.SwapMinTokens = 1; return o; });
        var threads = new ConcurrentBag<string?>();
        int held = 0, outs = 0, ins = 0;
        long advanced = -1;
        int pagesWhileCopying = -1;
        e.SwapCopyHook = (cache, toHost) =>
        {
            threads.Add(Thread.CurrentThread.Name);
            Interlocked.Increment(ref toHost ? ref outs : ref ins);
            if (!toHost || Interlocked.Exchange(ref held, 1) != 0) return;
            long start = e.GetMetrics().Loop.Iterations;
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (e.GetMetrics().Loop.Iterations < start + 1 && DateTime.UtcNow < until) Thread.Sleep(1);
            Volatile.Write(ref advanced, e.GetMetrics().Loop.Iterations - start);
            Volatile.Write(ref pagesWhileCopying, cache.PagesHeld);
        };
        var (outputs, expected) = await FloodThenQuiet(e, stepUntil: () => Volatile.Read(ref outs) > 0);
        await Idle(e);
        var m = e.GetMetrics();
        Assert.True(m.Scheduling.Swap.Preemptions > 0, $"no swap: {m}");
        Assert.True(outs > 0 && ins > 0, $"copies out {outs}, in {ins}");
        Assert.DoesNotContain("loom-engine", threads);
        // the engine computed on (at least the iteration that preempted) while the copy out was held, and the swapped
        // sequence's pages stayed its own
        Assert.True(Volatile.Read(ref advanced) >= 1, $"iterations during the copy: {advanced}");
        Assert.True(Volatile.Read(ref pagesWhileCopying) > 0, "pages were freed before the copy was done");
        // every copy back restores what was copied out; a sequence readmitted before its pages were taken back keeps
        // them and needs no copy back
        Assert.InRange(m.Scheduling.Swap.BytesIn, 1, m.Scheduling.Swap.BytesOut);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], Tokens(outputs[i]));
        Assert.Equal(0, m.Pool.KvPages);
        Assert.Null(e.Pool.Audit());
    }

    [Fact]
    public async Task RequestsCancelledWhileTheirSwapCopyRunsAreFreedOnceItEnds()
    {
        // flood requests long enough that none can finish before the test cancels them, however slowly it gets there
        var e = _h.Engine(o => { o.MaxRunningSequences = 3; o.VtcFairnessGap = 4; o.SwapMinTokens = 1; o.MaxContext = 256; return o; });
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int held = 0;
        PagedKvCache? heldCache = null;
        e.SwapCopyHook = (cache, toHost) =>
        {
            if (!toHost || Interlocked.Exchange(ref held, 1) != 0) return;
            Volatile.Write(ref heldCache, cache);
            entered.Set();
            release.Wait(TimeSpan.FromMinutes(3)); // the first copy out is held until the test lets it go (or gives up)
        };
        using var cancelFlood = new CancellationTokenSource();
        Task<List<GenerationEvent>>[] quiet;
        try
        {
            (var flood, quiet) = await StartFloodThenQuiet(e, cancelFlood.Token, floodTokens: 240, runFreely: false);
            // the loop runs one iteration at a time until the first copy out has started, then waits until the flood is
            // cancelled: on a loaded machine the copy thread may start the copy later than the flood's other sequences
            // would take to finish their tokens on this small model, had the loop run freely meanwhile
            var steps = e.Steps!;
            await StepUntil(e, () => entered.IsSet);

            // every flood request goes, the one being copied out among them; the engine takes the cancellations while
            // the copy is held, yet the cancelled request's pages stay taken: its copy is still reading them. (The quiet
            // tenant is not waited for here: a quiet sequence preempted meanwhile has its copy queued behind the held one
            // on the one copy thread.)
            cancelFlood.Cancel();
            steps.Release(int.MaxValue / 2);
            foreach (var f in flood) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => f.WaitAsync(Limit));
            await Until(() => e.GetMetrics() is { Requests.Cancelled: 6 }, () => $"cancellations not taken: {e.GetMetrics()}");
            Assert.True(Volatile.Read(ref heldCache)!.PagesHeld > 0, "the held copy's pages were freed while it ran");
            Assert.True(e.Pool.Usage.KvPages + e.Pool.Usage.CachedPages >= heldCache!.PagesHeld); // (its full blocks may be shared cached blocks)
        }
        finally
        {
            release.Set(); // however the test went, the held copy ends (the engine's disposal waits for it)
        }
        var outputs = await Task.WhenAll(quiet).WaitAsync(Limit);
        Assert.All(outputs, o => Assert.Equal(16, Tokens(o).Length));
        await Idle(e);  // also waits for the pool's KV pages to be back: the cancelled copy's are freed once it ended
        var m = e.GetMetrics();
        Assert.Equal((0, 6L, 0L), (m.Pool.KvPages, m.Requests.Cancelled, m.Requests.Failed));
        Assert.Equal(0, heldCache!.PagesHeld);
        Assert.Null(e.Pool.Audit());
    }
}
