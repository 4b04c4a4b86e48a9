using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Fairness;

/// <summary>A request whose adapter is still being read from disk is not short of memory: it waits for the read
/// without the policy preempting running sequences for it, and the requests queued behind it are admitted meanwhile.</summary>
public sealed class AdapterReadAdmissionTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Request(string tenant, int seed, int tokens, string? adapter = null) => new()
    {
        PromptTokenIds = Enumerable.Range(0, 6).Select(i => (seed * 31 + i * 7) % 320).ToArray(),
        TenantId = tenant,
        AdapterId = adapter,
        Sampling = new SamplingParams { Seed = (ulong)seed, MaxTokens = tokens, IgnoreEos = true, Temperature = 0.8f },
    };

    /// <summary>An engine running four flood requests (VTC, no fairness gap: were the read taken for a lack of memory,
    /// the flood would be preempted for the quiet tenant; no host cache: the adapter is read from disk when a request
    /// needs it), with the read of adapter "slow" held until <c>proceed</c> is set.</summary>
    private async Task<(ServingEngine Engine, Task<List<GenerationEvent>>[] Flood, ManualResetEventSlim Reading, ManualResetEventSlim Proceed)> FloodWithHeldRead(
        int maxRunning, int floodRequests)
    {
        var e = _h.Engine(o => { o.MaxRunningSequences = maxRunning; o.VtcFairnessGap = 0; o.HostAdapterCacheBytes = 0; return o; });
        string folder = _h.Adapter(4, [LoraTarget.QProj, LoraTarget.VProj], 5);
        e.RegisterAdapter("slow", folder);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var reading = new ManualResetEventSlim();
        var proceed = new ManualResetEventSlim();
        e.Adapters.BeforeRead = f =>
        {
            if (f != full) return;
            reading.Set();
            Assert.True(proceed.Wait(Limit));
        };
        e.Steps = new SemaphoreSlim(0);
        var flood = Enumerable.Range(0, floodRequests).Select(i => Run(e, Request("flood", i, tokens: 40))).ToArray();
        await Until(() => e.ArrivalsQueued >= floodRequests, () => "the flood never reached the engine");
        e.Steps.Release(3);
        await Until(() => e.GetMetrics() is { Loop: { Iterations: 3, Running: 4 } }, () => $"the flood never ran: {e.GetMetrics()}");
        return (e, flood, reading, proceed);
    }

    [Fact]
    public async Task ARequestWaitingForItsAdapterReadPreemptsNobodyAndHoldsUpNobodyBehindIt()
    {
        var (e, flood, reading, proceed) = await FloodWithHeldRead(maxRunning: 8, floodRequests: 4);
        using var r1 = reading;
        using var r2 = proceed;

        // the quiet tenant's adapter request heads the queue (VTC lifts the tenant to the flood's counter; it arrived
        // first), its read is held; a base-model request of the same tenant queues behind it
        var withAdapter = Run(e, Request("quiet", 50, tokens: 4, adapter: "slow"));
        await Until(() => e.ArrivalsQueued >= 1, () => "the adapter request never reached the engine");
        e.Steps!.Release(1);
        Assert.True(reading.Wait(Limit), "the adapter was never read");
        var behind = Run(e, Request("quiet", 51, tokens: 4));
        await Until(() => e.ArrivalsQueued >= 1, () => "the request behind never reached the engine");

        // while the read is held, iterations go on: the request behind runs to its end, nobody is preempted
        e.Steps.Release(12);
        var behindDone = await Task.WhenAny(behind, Task.Delay(Limit));
        var m = e.GetMetrics();
        Assert.True(behindDone == behind, $"the request behind the adapter read was held up: {m}");
        Assert.Equal(4, Tokens(await behind).Length);
        Assert.False(withAdapter.IsCompleted);
        Assert.Equal(0, m.Scheduling.Preemptions);

        proceed.Set();
        e.Steps.Release(int.MaxValue / 2);
        Assert.Equal(4, Tokens(await withAdapter.WaitAsync(Limit)).Length);
        foreach (var f in flood) Assert.Equal(40, Tokens(await f.WaitAsync(Limit)).Length);
        Assert.Equal(0, e.GetMetrics().Scheduling.FairnessPreemptions);
    }

    [Fact]
    public async Task WithEverySlotTakenNothingIsPreemptedForARequestWhoseAdapterIsStillBeingRead()
    {
        // four slots, five flood requests: one of the flood waits, so the policy would preempt the flood for the quiet
        // tenant, and would go on preempting while the reservation fails
        var (e, flood, reading, proceed) = await FloodWithHeldRead(maxRunning: 4, floodRequests: 5);
        using var r1 = reading;
        using var r2 = proceed;
        var withAdapter = Run(e, Request("quiet", 50, tokens: 4, adapter: "slow"));
        await Until(() => e.ArrivalsQueued >= 1, () => "the adapter request never reached the engine");
        e.Steps!.Release(1);
        Assert.True(reading.Wait(Limit), "the adapter was never read");
        e.Steps.Release(8);
        await Until(() => e.GetMetrics().Loop.Iterations >= 12, () => $"the flood stopped running: {e.GetMetrics()}");
        var m = e.GetMetrics();
        Assert.Equal(0, m.Scheduling.Preemptions);
        Assert.False(withAdapter.IsCompleted);

        // once read, the quiet tenant gets a slot by a fairness preemption, and everything finishes
        proceed.Set();
        e.Steps.Release(int.MaxValue / 2);
        Assert.Equal(4, Tokens(await withAdapter.WaitAsync(Limit)).Length);
        foreach (var f in flood) Assert.Equal(40, Tokens(await f.WaitAsync(Limit)).Length);
        Assert.True(e.GetMetrics().Scheduling.FairnessPreemptions > 0, $"the quiet tenant never got a slot by fairness: {e.GetMetrics()}");
    }
}
