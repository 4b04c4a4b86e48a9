using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Multi-turn reuse in the engine: a next turn of the same tenant starts from its earlier turn's KV and
/// produces the tokens of a run without reuse; another tenant with the identical prompt never gets that KV.</summary>
public sealed class PrefixReuseTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    private static GenerationRequest Request(string tenant, int[] prompt, string? adapter = null) => new()
    {
        PromptTokenIds = prompt,
        TenantId = tenant,
        AdapterId = adapter,
        Sampling = new SamplingParams { Seed = 42, MaxTokens = 10, IgnoreEos = true, Temperature = 0.7f },
    };

    [Fact]
    public async Task ASecondTurnReusesItsTenantsKvAndAnotherTenantWithTheSamePromptDoesNot()
    {
        var e = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 1 << 20; return o; });
        var plain = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 0; return o; });
        int[] turn1 = [3, 14, 15, 92, 65, 35, 89, 79];
        var out1 = Tokens(await Run(e, Request("a", turn1)));
        Assert.Equal(10, out1.Length);
        int[] turn2 = [.. turn1, .. out1, 32, 38, 46];

        var b = Tokens(await Run(e, Request("b", turn2)));       // identical prompt, other tenant
        var m = e.GetMetrics();
        Assert.Equal(0, m.Prefix.Hits);
        Assert.True(m.Prefix.Bytes > 0);

        long computedBefore = m.Loop.TokensComputed;
        var a = Tokens(await Run(e, Request("a", turn2)));
        m = e.GetMetrics();
        Assert.Equal(1, m.Prefix.Hits);
        Assert.Equal(turn1.Length + out1.Length - 1, m.Prefix.TokensReused); // the last sampled token was never fed
        int reused = turn1.Length + out1.Length - 1;
        Assert.Equal(turn2.Length - reused + a.Length - 1, m.Loop.TokensComputed - computedBefore); // only the new tokens ran

        var expected = Tokens(await Run(plain, Request("a", turn2)));
        Assert.Equal(expected, a);
        Assert.Equal(expected, b);
        await Idle(e);
        Assert.Null(e.Pool.Audit());
        Assert.Equal(0, e.Pool.Usage.KvPages);
    }

    [Fact]
    public async Task ReuseNeedsTheSameAdapterAndForgetsAnUnregisteredOne()
    {
        var e = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 1 << 20; return o; });
        e.RegisterAdapter("x", _h.Adapter(4, [Loom.Inference.Formats.LoraTarget.QProj], 7));
        int[] turn1 = [7, 7, 8, 9, 10, 11];
        var out1 = Tokens(await Run(e, Request("a", turn1, "x")));
        int[] turn2 = [.. turn1, .. out1, 1, 2];
        await Run(e, Request("a", turn2));                       // base model: no hit
        Assert.Equal(0, e.GetMetrics().Prefix.Hits);
        await Idle(e);
        e.UnregisterAdapter("x");
        e.RegisterAdapter("x", _h.Adapter(4, [Loom.Inference.Formats.LoraTarget.QProj], 8));
        await Run(e, Request("a", turn2, "x"));                  // same id, other weights: the old KV is gone
        Assert.Equal(0, e.GetMetrics().Prefix.Hits);
    }

    [Fact]
    public async Task AFinishedTurnIsCopiedOffTheEngineThreadAndTheNextTurnWaitsForItsCopy()
    {
        var e = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 1 << 20; return o; });
        var plain = _h.Engine(o => { o.PrefixCaching = false; o.PrefixCacheBytes = 0; return o; });
        using var copying = new ManualResetEventSlim();
        using var hold = new ManualResetEventSlim();
        string? thread = null;
        int copies = 0;
        e.PrefixCopyHook = _ =>
        {
            if (Interlocked.Increment(ref copies) != 1) return; // only the first turn's copy is held
            thread = Thread.CurrentThread.Name;
            copying.Set();
            Assert.True(hold.Wait(Limit));
        };
        int[] turn1 = [3, 14, 15, 92, 65, 35, 89, 79];
        var out1 = Tokens(await Run(e, Request("a", turn1)).WaitAsync(Limit)); // its stream ends while its copy is held
        Assert.True(copying.Wait(Limit), "no prefix copy started");
        Assert.Equal("loom-swap-copy", thread);
        Assert.True(e.Pool.Usage.KvPages > 0, "the pages went back while their copy was still running");

        // the engine serves on while the copy is held; the same tenant's next turn waits for it
        int[] turn2 = [.. turn1, .. out1, 32, 38, 46];
        var next = Run(e, Request("a", turn2));
        Assert.Equal(10, Tokens(await Run(e, Request("b", [1, 2, 3])).WaitAsync(Limit)).Length);
        Assert.False(next.IsCompleted);
        Assert.Equal(0, e.GetMetrics().Prefix.Hits);

        hold.Set();
        var a = Tokens(await next.WaitAsync(Limit));
        var m = e.GetMetrics();
        Assert.Equal(1, m.Prefix.Hits);
        Assert.Equal(turn1.Length + out1.Length - 1, m.Prefix.TokensReused);
        Assert.Equal(Tokens(await Run(plain, Request("a", turn2))), a);
        await Idle(e);
        Assert.Null(e.Pool.Audit());
    }
}
