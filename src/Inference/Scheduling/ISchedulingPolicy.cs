namespace Loom.Inference.Scheduling;

/// <summary>The order in which waiting sequences are admitted and running ones preempted. FCFS now; a fair policy
/// (per-tenant virtual token counters) plugs in here.</summary>
public interface ISchedulingPolicy
{
    /// <summary>The waiting sequence to admit next (the list is never empty).</summary>
    Sequence NextToAdmit(IReadOnlyList<Sequence> waiting);

    /// <summary>The running sequence to preempt when memory runs out (the list is never empty). The scheduler preempts it.</summary>
    Sequence ChooseVictim(IReadOnlyList<Sequence> running);

    /// <summary>Called after each iteration with the tokens computed for a sequence: prompt (prefill, recompute) and generated.</summary>
    void OnServed(Sequence sequence, int promptTokens, int generatedTokens);

    /// <summary>A sequence joined the waiting list: new, or sent back by a preemption.</summary>
    void OnWaiting(Sequence sequence) { }

    /// <summary>A waiting sequence was admitted to the running set.</summary>
    void OnAdmitted(Sequence sequence) { }

    /// <summary>A sequence left the scheduler: finished, cancelled, failed or out of memory.</summary>
    void OnDeparted(Sequence sequence) { }

    /// <summary>Asked when sequences wait but admission is blocked (memory or the running limit): a running sequence to
    /// preempt so that a less-served waiting one can run, or null to wait. The scheduler preempts what it returns.</summary>
    Sequence? FairnessVictim(IReadOnlyList<Sequence> waiting, IReadOnlyList<Sequence> running) => null;
}

/// <summary>First come, first served: the oldest waiting sequence is admitted first, the newest running one is preempted.</summary>
public sealed class FcfsPolicy : ISchedulingPolicy
{
    public Sequence NextToAdmit(IReadOnlyList<Sequence> waiting)
    {
        var best = waiting[0];
        foreach (var s in waiting) if (s.Arrival < best.Arrival) best = s;
        return best;
    }

    public Sequence ChooseVictim(IReadOnlyList<Sequence> running)
    {
        var newest = running[0];
        foreach (var s in running) if (s.Arrival > newest.Arrival) newest = s;
        return newest;
    }

    public void OnServed(Sequence sequence, int promptTokens, int generatedTokens) { }
}
