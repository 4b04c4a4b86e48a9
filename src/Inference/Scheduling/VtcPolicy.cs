namespace Loom.Inference.Scheduling;

/// <summary>How service is counted for fairness: each prompt token costs <see cref="Input"/>, each generated token
/// <see cref="Output"/> (output tokens cost more: a decode is a whole iteration's slot for one token).</summary>
public sealed record VtcWeights(double Input = 1, double Output = 2)
{
    public static VtcWeights Default { get; } = new();

    public void Validate()
    {
        if (!(Input >= 0) || !(Output >= 0) || Input + Output <= 0 || double.IsInfinity(Input) || double.IsInfinity(Output))
            throw new ArgumentOutOfRangeException(nameof(VtcWeights), "VTC weights must be finite, not negative, and not both zero");
    }
}

/// <summary>One tenant as the fair scheduler sees it, for metrics.</summary>
/// <param name="Counter">Virtual token counter: weighted service divided by the share, plus lifts.</param>
/// <param name="Waiting">Sequences of the tenant waiting (the tenant is backlogged while this is above 0).</param>
/// <param name="Running">Sequences of the tenant running.</param>
/// <param name="InputTokens">Prompt tokens charged (each once, recompute after preemption not charged).</param>
/// <param name="OutputTokens">Tokens generated.</param>
/// <param name="Preemptions">Sequences of the tenant chosen as victims (for memory or for fairness).</param>
public sealed record TenantServiceSnapshot(string TenantId, double Counter, double Share, int Waiting, int Running,
    long InputTokens, long OutputTokens, long Preemptions);

/// <summary>Fair scheduling across tenants with virtual token counters (VTC, "Fairness in Serving Large Language
/// Models", OSDI 2024). Each tenant's counter grows by (input weight × prompt tokens + output weight × generated
/// tokens) / share; prompts are charged at admission (or, without the admission hook, as they are prefilled; a prefix
/// reused from the tenant's earlier turn is not charged), outputs at each step that samples a token. A tenant is backlogged while it has a sequence waiting; when it becomes
/// backlogged its counter is lifted to the least counter among backlogged tenants, or, when none is, to the (current)
/// counter of the tenant that stopped being backlogged last, so idle time (or asking for little) banks no credit. The least-served
/// backlogged tenant is admitted first (between equal counters, the one with fewer sequences running); within a tenant the higher <see cref="Sequence.Priority"/> first, then arrival
/// order. Victims come from the most-served tenant among the running ones: its lowest-priority, newest sequence.
/// <para>Tokens recomputed after a preemption are not charged again: the scheduler chose to drop them. Called from the
/// engine loop only; <see cref="Snapshot"/> may be called from any thread.</para></summary>
public sealed class VtcPolicy : ISchedulingPolicy
{
    private sealed class Tenant(string id)
    {
        public readonly string Id = id;
        public double Counter;
        public double Share = 1;
        public int Waiting, Running;
        public long Input, Output, Victims;
    }

    private enum Place { None, Waiting, Running }

    /// <summary>A sequence in the engine: its tenant, where it is, how many of its prompt tokens were charged.</summary>
    private sealed class Membership(Tenant tenant)
    {
        public readonly Tenant Tenant = tenant;
        public Place Place;
        public int PromptCharged;
    }

    private readonly Dictionary<string, Tenant> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<long, Membership> _members = [];
    private readonly Lock _lock = new();
    private Tenant? _lastLeft; // the tenant that stopped being backlogged last

    /// <param name="fairnessGap">How far (in counter units) the most-served running tenant must be ahead of the
    /// least-served waiting one before <see cref="FairnessVictim"/> preempts for it. Below it, waiting for a
    /// sequence to finish is cheaper than dropping one.</param>
    public VtcPolicy(VtcWeights? weights = null, double fairnessGap = 4096)
    {
        Weights = weights ?? VtcWeights.Default;
        Weights.Validate();
        if (!(fairnessGap >= 0)) throw new ArgumentOutOfRangeException(nameof(fairnessGap));
        FairnessGap = fairnessGap;
    }

    public VtcWeights Weights { get; }
    public double FairnessGap { get; }

    /// <summary>The key of a sequence's tenant (requests without one share the tenant "").</summary>
    public static string TenantKey(Sequence s) => s.TenantId ?? "";

    /// <summary>Sets a tenant's share (its weight in the division of service; default 1). Affects later charges.</summary>
    public void SetShare(string? tenantId, double share)
    {
        if (!(share > 0) || double.IsInfinity(share)) throw new ArgumentOutOfRangeException(nameof(share), "a tenant's share must be positive and finite");
        lock (_lock) Get(tenantId ?? "").Share = share;
    }

    /// <summary>A tenant's counter (0 for one never seen).</summary>
    public double Counter(string? tenantId)
    {
        lock (_lock) return _tenants.TryGetValue(tenantId ?? "", out var t) ? t.Counter : 0;
    }

    /// <summary>Whether the tenant has a sequence waiting.</summary>
    public bool IsBacklogged(string? tenantId)
    {
        lock (_lock) return _tenants.TryGetValue(tenantId ?? "", out var t) && t.Waiting > 0;
    }

    /// <summary>A sequence joined the waiting list (new, or preempted). If its tenant had none waiting, the tenant's
    /// counter is lifted (see the class). Calling it again while the sequence waits does nothing.</summary>
    public void OnWaiting(Sequence s)
    {
        lock (_lock)
        {
            var m = Member(s);
            if (m.Place == Place.Waiting) return;
            Leave(m);
            var t = m.Tenant;
            if (t.Waiting == 0) t.Counter = Math.Max(t.Counter, LiftFloor(t));
            m.Place = Place.Waiting;
            t.Waiting++;
        }
    }

    /// <summary>A sequence moved from waiting to running: its prompt not yet charged is charged now. Calling it again
    /// while the sequence runs does nothing.</summary>
    public void OnAdmitted(Sequence s)
    {
        lock (_lock)
        {
            var m = Member(s);
            if (m.Place == Place.Running) return;
            Leave(m);
            m.Place = Place.Running;
            m.Tenant.Running++;
            ChargePrompt(m, s.PromptLength);
        }
    }

    /// <summary>A sequence left the engine (finished, cancelled, failed). Unknown sequences are ignored.</summary>
    public void OnDeparted(Sequence s)
    {
        lock (_lock)
        {
            if (_members.Remove(s.Id, out var m)) Leave(m);
        }
    }

    public Sequence NextToAdmit(IReadOnlyList<Sequence> waiting)
    {
        lock (_lock)
        {
            var best = waiting[0];
            double bestCounter = CounterOf(best);
            for (int i = 1; i < waiting.Count; i++)
            {
                var s = waiting[i];
                double c = CounterOf(s);
                if (c < bestCounter || (c == bestCounter && Ahead(s, best))) { best = s; bestCounter = c; }
            }
            return best;
        }
    }

    public Sequence ChooseVictim(IReadOnlyList<Sequence> running)
    {
        lock (_lock)
        {
            var victim = MostServed(running);
            Preempted(victim);
            return victim;
        }
    }

    /// <summary>A running sequence to preempt so that the least-served waiting tenant can be admitted, or null. Two
    /// reasons: a backlogged tenant with running sequences is ahead of it by more than <see cref="FairnessGap"/> (its
    /// most-served such tenant gives one up); or the waiting tenant holds fewer running slots than its share of them
    /// (the running sequences divided among the tenants running or waiting, in proportion to their shares), the waiting
    /// sequence is a new request, and a tenant at least one slot above its own share is not behind it: that tenant gives
    /// one up at once. Without the second, a tenant lifted to
    /// the others' counter on arrival ties with a flood and waits for one of the flood's sequences to end before its
    /// first token. Only backlogged tenants (asking for more than they get) give up sequences, and only sequences that
    /// have computed something: preempting a tenant that waits for nothing would cost its latency without evening out
    /// service, and one just admitted would only bounce between tenants. The scheduler asks when admission is blocked
    /// (memory or the running limit) and preempts what this returns.</summary>
    public Sequence? FairnessVictim(IReadOnlyList<Sequence> waiting, IReadOnlyList<Sequence> running)
    {
        if (waiting.Count == 0 || running.Count == 0) return null;
        var next = NextToAdmit(waiting);
        lock (_lock)
        {
            var behind = Member(next).Tenant;
            double shares = 0;
            foreach (var t in _tenants.Values)
                if (t.Waiting > 0 || t.Running > 0) shares += t.Share;
            double SlotShare(Tenant t) => running.Count * t.Share / shares;
            // (only for a new request, waiting for its first token: a preempted one resuming would only bounce)
            bool underShare = next.Preemptions == 0 && next.Computed == 0 && behind.Running + 1 <= SlotShare(behind);
            Sequence? byCounter = null, bySlots = null;
            double worst = 0, mostOver = 0;
            foreach (var s in running)
            {
                var t = Member(s).Tenant;
                // nothing computed yet (admitted in this very round): dropping it gains no room over time, only churn
                if (t == behind || t.Waiting == 0 || s.Computed == 0) continue;
                if (byCounter is null || t.Counter > worst || (t.Counter == worst && Before(byCounter, s))) { byCounter = s; worst = t.Counter; }
                double over = t.Running - SlotShare(t);
                if (underShare && over >= 1 && t.Counter >= behind.Counter
                    && (bySlots is null || over > mostOver || (over == mostOver && Before(bySlots, s)))) { bySlots = s; mostOver = over; }
            }
            var victim = byCounter is not null && worst - behind.Counter > FairnessGap ? byCounter : bySlots;
            if (victim is null) return null;
            Preempted(victim);
            return victim;
        }
    }

    public void OnServed(Sequence sequence, int promptTokens, int generatedTokens)
    {
        lock (_lock)
        {
            var m = Member(sequence);
            // the chunk ended at Computed: prompt positions up to there are charged (once)
            ChargePrompt(m, Math.Min(sequence.Computed, sequence.PromptLength));
            // a chunk that reaches the end of the sequence samples one new token
            if (sequence.Computed == sequence.TokenCount)
            {
                m.Tenant.Counter += Weights.Output / m.Tenant.Share;
                m.Tenant.Output++;
            }
        }
    }

    /// <summary>Charges a tenant for fine-tuning work done in the engine loop: <paramref name="weightedTokens"/> (trained
    /// tokens times the configured weight) divided by its share, like served tokens.</summary>
    public void ChargeTraining(string? tenantId, double weightedTokens)
    {
        if (!(weightedTokens >= 0)) throw new ArgumentOutOfRangeException(nameof(weightedTokens));
        lock (_lock)
        {
            var t = Get(tenantId ?? "");
            t.Counter += weightedTokens / t.Share;
        }
    }

    /// <summary>The lowest counter among tenants with sequences waiting, or null when nobody waits.</summary>
    public double? LowestWaitingCounter()
    {
        lock (_lock)
        {
            double? low = null;
            foreach (var t in _tenants.Values)
                if (t.Waiting > 0 && (low is null || t.Counter < low)) low = t.Counter;
            return low;
        }
    }

    /// <summary>Every tenant seen so far, by id.</summary>
    public IReadOnlyList<TenantServiceSnapshot> Snapshot()
    {
        lock (_lock)
        {
            var list = new List<TenantServiceSnapshot>(_tenants.Count);
            foreach (var t in _tenants.Values) list.Add(new TenantServiceSnapshot(t.Id, t.Counter, t.Share, t.Waiting, t.Running, t.Input, t.Output, t.Victims));
            list.Sort(static (a, b) => string.CompareOrdinal(a.TenantId, b.TenantId));
            return list;
        }
    }

    // ---- helpers (under _lock) -----------------------------------------------------------------------------

    private Tenant Get(string id)
    {
        if (!_tenants.TryGetValue(id, out var t)) _tenants.Add(id, t = new Tenant(id));
        return t;
    }

    /// <summary>The sequence's membership; a sequence not announced before joins here. A sequence that arrives with
    /// tokens already computed (a prefix reused from the tenant's earlier turn) is not charged for them: they cost
    /// nothing to serve.</summary>
    private Membership Member(Sequence s)
    {
        if (!_members.TryGetValue(s.Id, out var m))
            _members.Add(s.Id, m = new Membership(Get(TenantKey(s))) { PromptCharged = Math.Min(s.Computed, s.PromptLength) });
        return m;
    }

    /// <summary>Takes the sequence out of its tenant's waiting or running count.</summary>
    private void Leave(Membership m)
    {
        if (m.Place == Place.Waiting && --m.Tenant.Waiting == 0) _lastLeft = m.Tenant;
        if (m.Place == Place.Running) m.Tenant.Running--;
        m.Place = Place.None;
    }

    /// <summary>A victim: counted, and no longer running (the scheduler sends it back to waiting).</summary>
    private void Preempted(Sequence victim)
    {
        var m = Member(victim);
        m.Tenant.Victims++;
        Leave(m);
    }

    private double CounterOf(Sequence s) => Member(s).Tenant.Counter;

    private double LiftFloor(Tenant arriving)
    {
        double floor = double.PositiveInfinity;
        foreach (var t in _tenants.Values)
            if (t != arriving && t.Waiting > 0 && t.Counter < floor) floor = t.Counter;
        return double.IsPositiveInfinity(floor) ? _lastLeft?.Counter ?? 0 : floor;
    }

    private void ChargePrompt(Membership m, int upTo)
    {
        if (upTo <= m.PromptCharged) return;
        int n = upTo - m.PromptCharged;
        m.PromptCharged = upTo;
        m.Tenant.Counter += Weights.Input * n / m.Tenant.Share;
        m.Tenant.Input += n;
    }

    /// <summary>Between equal counters: the tenant with fewer sequences running first (a tenant just lifted to the
    /// others' level ties with them), then <see cref="Before"/>.</summary>
    private bool Ahead(Sequence a, Sequence b)
    {
        Tenant ta = Member(a).Tenant, tb = Member(b).Tenant;
        return ta != tb && ta.Running != tb.Running ? ta.Running < tb.Running : Before(a, b);
    }

    /// <summary>Within a tenant (and between equal counters): higher priority first, then earlier arrival.</summary>
    private static bool Before(Sequence a, Sequence b) =>
        a.Priority != b.Priority ? a.Priority > b.Priority : a.Arrival < b.Arrival;

    /// <summary>The most-served tenant's lowest-priority, newest running sequence.</summary>
    private Sequence MostServed(IReadOnlyList<Sequence> running)
    {
        var victim = running[0];
        double worst = CounterOf(victim);
        for (int i = 1; i < running.Count; i++)
        {
            var s = running[i];
            double c = CounterOf(s);
            if (c > worst || (c == worst && Before(victim, s))) { victim = s; worst = c; }
        }
        return victim;
    }
}
