using Loom.Inference.Scheduling;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Simulated overload on the real scheduler: three tenants, one sending four times the others' rate, all
/// asking for more than the engine can serve. Under VTC the weighted service of any two continuously backlogged
/// tenants never drifts apart by more than twice the largest request's weighted tokens; under FCFS, on the same
/// trace, it does (so the measurement can fail).</summary>
public sealed class OverloadFairnessTests
{
    private const int Iterations = 3000;

    /// <summary>Arrival rates per iteration, scaled to the running limit so that every tenant asks for more than a
    /// third of what the engine serves (about 2.5 times its capacity in all).</summary>
    private static (string, double)[] Tenants(int maxRunning) =>
        [("flood", 0.075 * maxRunning), ("b", 0.01875 * maxRunning), ("c", 0.01875 * maxRunning)];

    private static (FairnessSimulation Sim, double Bound) Run(ISchedulingPolicy policy, int seed, int maxRunning)
    {
        var trace = FairnessSimulation.Trace(seed, Iterations, Tenants(maxRunning), prompt: (8, 48), output: (4, 40));
        var w = VtcWeights.Default;
        double bound = 2 * trace.Max(r => w.Input * r.Prompt + w.Output * r.Output);
        var limits = new SchedulerLimits(TokenBudget: 64, MaxRunning: maxRunning, PrefillChunk: 64);
        var sim = new FairnessSimulation(policy, limits, new TokenPageMemory(pages: 64, pageTokens: 16), w);
        sim.Run(trace, Iterations);
        return (sim, bound);
    }

    private static void AssertBoundHoldsUnderVtcAndNotUnderFcfs(VtcPolicy vtcPolicy, int seed, int maxRunning)
    {
        var (vtc, bound) = Run(vtcPolicy, seed, maxRunning);
        double gap = vtc.MaxBackloggedGap(out string where);
        Assert.True(gap <= bound, $"VTC: gap {gap} > bound {bound} ({where})");

        // the three really were backlogged together for most of the run (overload), and each got service
        int together = vtc.Timeline.Count(t => t.Values.All(v => v.Backlogged));
        Assert.True(together > Iterations / 4, $"all three backlogged in only {together} iterations");
        Assert.All(vtc.Service.Values, s => Assert.True(s > 0));

        var (fcfs, _) = Run(new FcfsPolicy(), seed, maxRunning);
        double fcfsGap = fcfs.MaxBackloggedGap(out string fcfsWhere);
        Assert.True(fcfsGap > bound, $"FCFS: gap {fcfsGap} <= bound {bound} ({fcfsWhere}): the trace does not test fairness");
    }

    /// <summary>One running sequence at a time: admission order alone keeps the bound.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    public void OneAtATimeVtcAdmissionKeepsTheBoundWhereFcfsDoesNot(int seed) =>
        AssertBoundHoldsUnderVtcAndNotUnderFcfs(new VtcPolicy(), seed, maxRunning: 1);

    /// <summary>Eight running at a time: running sequences of an over-served tenant keep earning while a less-served
    /// one waits, so admission order alone overshoots; the scheduler preempts for fairness once the gap passes a
    /// quarter of the bound, and the bound holds. Preemption stays rare.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    public void BatchedVtcWithFairnessPreemptionKeepsTheBoundWhereFcfsDoesNot(int seed)
    {
        var policy = new VtcPolicy(fairnessGap: 64);
        AssertBoundHoldsUnderVtcAndNotUnderFcfs(policy, seed, maxRunning: 8);
    }

    /// <summary>Fairness preemptions are counted per tenant and number at most one per new request of the tenants other
    /// than the flood: a new request of a tenant below its share of the running slots takes one at once (all three are
    /// backlogged here, so slot shares swing between all of them), the rest come from the gap.</summary>
    [Fact]
    public void FairnessPreemptionsAreBoundedAndCountedPerTenant()
    {
        foreach (var policy in new[] { new VtcPolicy(fairnessGap: 64), new VtcPolicy() })
        {
            var (sim, _) = Run(policy, 11, maxRunning: 8);
            long fairness = sim.Scheduler.FairnessPreemptions;
            var tenants = policy.Snapshot();
            int others = sim.Done.Values.Count(d => d.Request.Tenant != "flood");
            Assert.InRange(fairness, 1, others);
            Assert.Equal(sim.Scheduler.Preemptions, fairness); // memory never ran short in this trace
            Assert.Equal(fairness, tenants.Sum(t => t.Preemptions));
        }
    }

    [Fact]
    public void UnderVtcTheFloodingTenantGetsAThirdNotTwoThirds()
    {
        var (vtc, _) = Run(new VtcPolicy(), 14, maxRunning: 1);
        var (fcfs, _) = Run(new FcfsPolicy(), 14, maxRunning: 1);
        static double Share(FairnessSimulation s) => s.Service["flood"] / s.Service.Values.Sum();
        Assert.InRange(Share(vtc), 0.28, 0.38);
        Assert.True(Share(fcfs) > 0.55, $"FCFS flood share {Share(fcfs)}");
    }

    [Fact]
    public void ServiceDividesInProportionToTheShares()
    {
        var policy = new VtcPolicy();
        policy.SetShare("b", 2);
        var trace = FairnessSimulation.Trace(15, Iterations, [("a", 0.1), ("b", 0.1)], prompt: (8, 48), output: (4, 40));
        var sim = new FairnessSimulation(policy, new SchedulerLimits(64, 1, 64), new TokenPageMemory(64, 16), VtcWeights.Default);
        sim.Run(trace, Iterations);
        Assert.InRange(sim.Service["b"] / sim.Service["a"], 1.8, 2.2);
    }
}
