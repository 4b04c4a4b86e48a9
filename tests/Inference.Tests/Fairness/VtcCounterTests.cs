using Loom.Inference.Scheduling;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Counter arithmetic, the lift rule, ordering and victims of <see cref="VtcPolicy"/> on scripted traces: the
/// test plays the scheduler's part (hooks, Computed, sampling) step by step, single-threaded.</summary>
public sealed class VtcCounterTests
{
    private long _ids;

    private Sequence Seq(string tenant, int prompt, int priority = 0)
    {
        long id = _ids++;
        return new Sequence(id, Enumerable.Range(1, prompt).ToArray(), prompt + 1000, null, tenant, priority) { Arrival = id };
    }

    /// <summary>Runs the rest of the sequence through the model in one chunk and samples a token (appended).</summary>
    private static void Step(VtcPolicy p, Sequence s)
    {
        int start = s.Computed;
        s.Computed = s.TokenCount;
        int prompt = Math.Max(0, Math.Min(s.Computed, s.PromptLength) - start);
        p.OnServed(s, prompt, s.Computed - start - prompt);
        s.Append(7);
    }

    private static void Steps(VtcPolicy p, Sequence s, int n)
    {
        for (int i = 0; i < n; i++) Step(p, s);
    }

    private static Sequence Arrive(VtcPolicy p, Sequence s)
    {
        p.OnWaiting(s);
        return s;
    }

    private static TenantServiceSnapshot Of(VtcPolicy p, string tenant) => p.Snapshot().Single(t => t.TenantId == tenant);

    [Fact]
    public void PromptIsChargedAtAdmissionAndEachSampledTokenAtTwice()
    {
        var p = new VtcPolicy();
        var s = Arrive(p, Seq("a", 10));
        Assert.Equal(0, p.Counter("a"));
        p.OnAdmitted(s);
        Assert.Equal(10, p.Counter("a"));
        Step(p, s);      // prefill: samples the first token
        Assert.Equal(12, p.Counter("a"));
        Steps(p, s, 3);  // three decodes
        Assert.Equal(18, p.Counter("a"));
        var snap = Of(p, "a");
        Assert.Equal((10, 4, 0, 1), (snap.InputTokens, snap.OutputTokens, snap.Waiting, snap.Running));
    }

    [Fact]
    public void WeightsAreConfigurableAndServiceIsDividedByTheShare()
    {
        var p = new VtcPolicy(new VtcWeights(Input: 0.5, Output: 3));
        p.SetShare("a", 2);
        var s = Arrive(p, Seq("a", 8));
        p.OnAdmitted(s);
        Steps(p, s, 2);
        Assert.Equal((8 * 0.5 + 2 * 3) / 2, p.Counter("a"), 12);
        Assert.Equal(2, Of(p, "a").Share);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.SetShare("a", 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VtcPolicy(new VtcWeights(0, 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VtcPolicy(new VtcWeights(-1, 2)));
    }

    [Fact]
    public void ChunkedPrefillChargesThePromptOnceAndRecomputeAfterPreemptionIsNotCharged()
    {
        var p = new VtcPolicy();
        var s = Arrive(p, Seq("a", 10)); // no admission hook: the prompt is charged as it is prefilled
        s.Computed = 4;
        p.OnServed(s, 4, 0);
        Assert.Equal(4, p.Counter("a"));
        Step(p, s);                      // the other 6 prompt tokens, and a sample
        Assert.Equal(12, p.Counter("a"));

        // preempted by recompute: prompt and generated token run again, only the new sample is charged
        s.Computed = 0;
        p.OnWaiting(s);
        p.OnAdmitted(s);
        Assert.Equal(12, p.Counter("a"));
        Step(p, s);
        Assert.Equal(14, p.Counter("a"));
        Assert.Equal((10, 2), (Of(p, "a").InputTokens, Of(p, "a").OutputTokens));
    }

    [Fact]
    public void ATenantBecomingBackloggedIsLiftedToTheLeastBackloggedCounterNeverLowered()
    {
        var p = new VtcPolicy();
        // c alone: served 200, leaves
        var c1 = Arrive(p, Seq("c", 200));
        p.OnAdmitted(c1);
        p.OnDeparted(c1);
        Assert.Equal(200, p.Counter("c"));

        // nothing is backlogged: a is lifted to the counter of the tenant that stopped being backlogged last (c)
        var a1 = Arrive(p, Seq("a", 50));
        Assert.Equal(200, p.Counter("a"));
        p.OnAdmitted(a1);
        Assert.Equal(250, p.Counter("a"));
        Arrive(p, Seq("a", 5));                 // a backlogged again at 250
        Assert.Equal(250, p.Counter("a"));

        // b, never served, is lifted to the least backlogged counter (a's)
        var b1 = Arrive(p, Seq("b", 400));
        Assert.Equal(250, p.Counter("b"));
        p.OnAdmitted(b1);
        Assert.Equal(650, p.Counter("b"));
        Arrive(p, Seq("b", 5));                 // b backlogged again: 650 > 250, not lowered
        Assert.Equal(650, p.Counter("b"));

        // c comes back at 200: lifted to min(a 250, b 650), so its idle time banked nothing
        Arrive(p, Seq("c", 5));
        Assert.Equal(250, p.Counter("c"));

        // a is served on (a1 decodes); c arriving again while already backlogged is not lifted
        Steps(p, a1, 25);
        Assert.Equal(300, p.Counter("a"));
        Arrive(p, Seq("c", 5));
        Assert.Equal(250, p.Counter("c"));
        Assert.Equal(2, Of(p, "c").Waiting);
    }

    [Fact]
    public void ADepartureWhileWaitingEndsTheBacklogAndRepeatedHooksAreIgnored()
    {
        var p = new VtcPolicy();
        var a = Arrive(p, Seq("a", 30));
        p.OnWaiting(a);
        Assert.Equal(1, Of(p, "a").Waiting);
        p.OnAdmitted(a);
        p.OnAdmitted(a);
        Assert.Equal(30, p.Counter("a"));
        Assert.Equal((0, 1), (Of(p, "a").Waiting, Of(p, "a").Running));
        var b = Arrive(p, Seq("b", 1));
        Assert.True(p.IsBacklogged("b"));
        p.OnDeparted(b);                       // cancelled while waiting
        p.OnDeparted(b);
        Assert.False(p.IsBacklogged("b"));
        p.OnDeparted(a);
        Assert.Equal((0, 0), (Of(p, "a").Waiting, Of(p, "a").Running));
    }

    [Fact]
    public void TheLeastServedTenantIsAdmittedFirstThenPriorityThenArrivalWithinATenant()
    {
        var p = new VtcPolicy();
        var a0 = Arrive(p, Seq("a", 100));
        p.OnAdmitted(a0);                       // a at 100
        var aOld = Arrive(p, Seq("a", 1));
        var bOld = Arrive(p, Seq("b", 1));      // b lifted to 100: a tie, broken by sequences running (b has none)
        var bBatch = Arrive(p, Seq("b", 1, priority: -1));
        var bUrgent = Arrive(p, Seq("b", 1, priority: 1));
        Assert.Same(bOld, p.NextToAdmit([bBatch, aOld, bOld]));
        var c = Arrive(p, Seq("c", 1));         // c lifted to 100 as well, nothing running: a tie with b, broken by arrival
        Assert.Same(bOld, p.NextToAdmit([c, bOld]));
        p.OnDeparted(c);
        Step(p, a0);                            // a at 102: b is behind
        Assert.Same(bUrgent, p.NextToAdmit([aOld, bBatch, bOld, bUrgent]));
        Assert.Same(bOld, p.NextToAdmit([aOld, bBatch, bOld]));
        Assert.Same(bBatch, p.NextToAdmit([aOld, bBatch]));
    }

    [Fact]
    public void TheVictimIsTheMostServedTenantsLowestPriorityNewestSequence()
    {
        var p = new VtcPolicy();
        var a1 = Arrive(p, Seq("a", 10));
        var b1 = Arrive(p, Seq("b", 10));
        var b2 = Arrive(p, Seq("b", 10));
        var b3 = Arrive(p, Seq("b", 10, priority: 1));
        foreach (var s in new[] { a1, b1, b2, b3 }) p.OnAdmitted(s);
        Steps(p, a1, 3);                        // a 16, b 30
        Assert.Same(b2, p.ChooseVictim([b1, b3, a1, b2]));
        Assert.Same(b1, p.ChooseVictim([a1, b3, b1]));
        Assert.Same(b3, p.ChooseVictim([b3, a1]));
        Assert.Equal(3, Of(p, "b").Preemptions);
        Assert.Equal(0, Of(p, "b").Running);
    }

    [Fact]
    public void FairnessPreemptsOnlyForAWaitingTenantFurtherBehindThanTheGap()
    {
        var p = new VtcPolicy(fairnessGap: 50);
        var a1 = Arrive(p, Seq("a", 40));
        p.OnAdmitted(a1);                       // a at 40
        var b1 = Arrive(p, Seq("b", 5));        // b lifted to 40
        var a2 = Arrive(p, Seq("a", 5));
        Assert.Null(p.FairnessVictim([b1, a2], [a1]));
        Steps(p, a1, 25);                       // a at 90: 50 ahead, not more
        Assert.Null(p.FairnessVictim([b1, a2], [a1]));
        Step(p, a1);                            // 52 ahead
        Assert.Same(a1, p.FairnessVictim([b1, a2], [a1]));
        Assert.Null(p.FairnessVictim([a2], [a1])); // only a waits: its own sequences are not preempted for it
        Assert.Null(p.FairnessVictim([], [a1]));
        Assert.Equal(1, Of(p, "a").Preemptions);
    }

    [Fact]
    public void FairnessNeverPreemptsATenantThatWaitsForNothing()
    {
        var p = new VtcPolicy(fairnessGap: 10);
        var a1 = Arrive(p, Seq("a", 100));
        p.OnAdmitted(a1);                       // a at 100, nothing of a waiting
        var b1 = Arrive(p, Seq("b", 5));        // b: nothing was backlogged, lifted to a's 100 ...
        p.OnAdmitted(b1);
        var c1 = Arrive(p, Seq("c", 5));        // c: lifted to the last tenant that stopped waiting (b, 105)
        Steps(p, a1, 20);                       // a at 140: 35 ahead of c
        Assert.Equal(105, p.Counter("c"));
        Assert.Null(p.FairnessVictim([c1], [a1, b1]));
        var a2 = Arrive(p, Seq("a", 5));        // a asks for more: now its sequences give way
        Assert.Same(a1, p.FairnessVictim([c1, a2], [a1, b1]));
    }

    [Fact]
    public void FairnessNeverPreemptsASequenceThatHasComputedNothing()
    {
        var p = new VtcPolicy(fairnessGap: 10);
        var a1 = Arrive(p, Seq("a", 100));
        p.OnAdmitted(a1);                       // a at 100
        Arrive(p, Seq("a", 5));                 // a backlogged
        var c1 = Arrive(p, Seq("c", 5));        // c lifted to a's 100
        var a3 = Arrive(p, Seq("a", 20));
        p.OnAdmitted(a3);                       // a at 120: 20 ahead, but a1 and a3 were just admitted
        Assert.Null(p.FairnessVictim([c1], [a1, a3]));
        Step(p, a1);                            // a1 has computed its prompt
        Assert.Same(a1, p.FairnessVictim([c1], [a1, a3]));
    }

    [Fact]
    public void ANewRequestOfATenantBelowItsShareOfTheSlotsTakesOneFromATenantAboveItsShareAtOnce()
    {
        var p = new VtcPolicy();                // the default gap: far above these requests
        var running = new List<Sequence>();
        for (int i = 0; i < 4; i++)
        {
            var a = Arrive(p, Seq("a", 10));
            p.OnAdmitted(a);
            Step(p, a);
            running.Add(a);
        }
        Arrive(p, Seq("a", 10));                // a backlogged, running all four slots
        var b1 = Arrive(p, Seq("b", 10));       // b lifted to a's counter (a tie); a and b share the four slots: two each
        var victim = p.FairnessVictim([b1], running);
        Assert.Same(running[3], victim);        // a's newest
        running.Remove(victim!);
        Assert.Equal(1, Of(p, "a").Preemptions);

        p.OnAdmitted(b1);
        Step(p, b1);
        running.Add(b1);
        foreach (var a in running.Where(x => x.TenantId == "a")) Steps(p, a, 3); // a's three catch up with b (66 vs 60)
        var b2 = Arrive(p, Seq("b", 10));       // b: one running, its share two, a has three and is not behind: one more slot
        Assert.Same(running[2], p.FairnessVictim([b2], running));
        running.Remove(running[2]);
        p.OnAdmitted(b2);
        Step(p, b2);
        running.Add(b2);
        var b3 = Arrive(p, Seq("b", 10));       // b at its share (two of four): it waits
        Assert.Null(p.FairnessVictim([b3], running));

        var p2 = new VtcPolicy();               // a resumed sequence (preempted before) does not take a slot this way
        var a1 = Arrive(p2, Seq("a", 10));
        var a2 = Arrive(p2, Seq("a", 10));
        foreach (var a in new[] { a1, a2 }) { p2.OnAdmitted(a); Step(p2, a); }
        Arrive(p2, Seq("a", 10));
        var resumed = Arrive(p2, Seq("b", 10));
        resumed.Preemptions = 1;
        Assert.Null(p2.FairnessVictim([resumed], [a1, a2]));
    }

    [Fact]
    public void AReusedPrefixIsNotCharged()
    {
        var p = new VtcPolicy();
        var s = Seq("a", 40);
        s.Computed = 30;                        // the engine found the first 30 prompt tokens in the prefix cache
        Arrive(p, s);
        p.OnAdmitted(s);
        Assert.Equal(10, p.Counter("a"));
        Step(p, s);                             // the last 10 prompt tokens and one sampled token
        Assert.Equal((10 + 2.0, 10L, 1L), (p.Counter("a"), Of(p, "a").InputTokens, Of(p, "a").OutputTokens));
    }
}
