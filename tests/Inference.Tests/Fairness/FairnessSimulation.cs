using Loom.Inference.Scheduling;

namespace Loom.Inference.Tests.Fairness;

/// <summary>Memory counted in pages of a fixed number of tokens, all-or-nothing per reservation (as the pool does).</summary>
internal sealed class TokenPageMemory(int pages, int pageTokens) : ISequenceMemory
{
    private readonly Dictionary<long, int> _held = [];
    public int Used { get; private set; }
    public int Pages => pages;

    public Reservation TryReserve(Sequence sequence, int tokens)
    {
        int need = (tokens + pageTokens - 1) / pageTokens;
        int have = _held.GetValueOrDefault(sequence.Id);
        if (need <= have) return Reservation.Reserved;
        if (Used + need - have > pages) return Reservation.NoRoom;
        Used += need - have;
        _held[sequence.Id] = need;
        return Reservation.Reserved;
    }

    public void Release(Sequence sequence)
    {
        if (_held.Remove(sequence.Id, out int n)) Used -= n;
    }
}

/// <summary>One request of a scripted trace: who, when (iteration), how long its prompt is and how many tokens it
/// will generate before it stops.</summary>
internal sealed record TraceRequest(string Tenant, int Iteration, int Prompt, int Output, int Priority = 0);

/// <summary>Drives the real <see cref="Scheduler"/> through a trace the way the engine loop does (schedule, run,
/// completed, sample: append or finish), single-threaded and deterministic. It keeps its own account of the service
/// each tenant received (prompt tokens computed the first time, tokens generated), weighted, independent of the
/// policy's counters, and records after every iteration who was backlogged (had a sequence waiting).</summary>
internal sealed class FairnessSimulation
{
    private readonly VtcWeights _w;
    public FairnessSimulation(ISchedulingPolicy policy, SchedulerLimits limits, ISequenceMemory memory, VtcWeights weights)
    {
        Policy = policy;
        Scheduler = new Scheduler(policy, memory, limits);
        _w = weights;
    }

    public ISchedulingPolicy Policy { get; }
    public Scheduler Scheduler { get; }
    /// <summary>Per iteration (after it ran): each tenant's cumulative weighted service, and whether it was backlogged
    /// during the whole iteration (from before scheduling to after finishing).</summary>
    public List<Dictionary<string, (double Service, bool Backlogged)>> Timeline { get; } = [];
    public Dictionary<string, double> Service { get; } = new(StringComparer.Ordinal);
    public Dictionary<long, (TraceRequest Request, long FirstToken, long Finished)> Done { get; } = [];
    public long Preemptions => Scheduler.Preemptions;

    public void Run(IReadOnlyList<TraceRequest> trace, int iterations)
    {
        var byIteration = trace.ToLookup(r => r.Iteration);
        var live = new Dictionary<Sequence, (TraceRequest Request, long FirstToken)>();
        var promptDone = new Dictionary<long, int>();
        var tenants = trace.Select(r => r.Tenant).Distinct().ToArray();
        foreach (var t in tenants) Service[t] = 0;
        long id = 0;
        for (int it = 0; it < iterations; it++)
        {
            foreach (var r in byIteration[it])
            {
                var s = new Sequence(id++, Enumerable.Range(0, r.Prompt).Select(i => i % 100).ToArray(), r.Prompt + r.Output, null, r.Tenant, r.Priority);
                Scheduler.Add(s);
                live.Add(s, (r, -1));
            }
            var before = Backlogged();
            var plan = Scheduler.Schedule();
            Assert.Empty(plan.Failed);
            Assert.Empty(plan.OutOfMemory);
            Scheduler.Completed(plan);
            foreach (var c in plan.Chunks)
            {
                var s = c.Sequence;
                int already = promptDone.GetValueOrDefault(s.Id);
                int now = Math.Min(c.Start + c.Count, s.PromptLength);
                if (now > already)
                {
                    Service[s.TenantId!] += _w.Input * (now - already);
                    promptDone[s.Id] = now;
                }
                if (!c.Samples) continue;
                Service[s.TenantId!] += _w.Output;
                var (req, first) = live[s];
                if (first < 0) live[s] = (req, first = it);
                if (s.Generated + 1 == req.Output)
                {
                    Assert.True(Scheduler.Remove(s));
                    live.Remove(s);
                    Done.Add(s.Id, (req, first, it));
                }
                else s.Append(1000 + s.Generated);
            }
            var after = Backlogged();
            Timeline.Add(tenants.ToDictionary(t => t, t => (Service[t], before.Contains(t) && after.Contains(t))));
        }
    }

    /// <summary>Tenants with a sequence waiting.</summary>
    private HashSet<string> Backlogged() => [.. Scheduler.Waiting.Select(s => s.TenantId!)];

    /// <summary>The largest |ΔW_a − ΔW_b| over any interval during which tenants a and b were both continuously
    /// backlogged, over every pair: the quantity VTC bounds.</summary>
    public double MaxBackloggedGap(out string pair)
    {
        double worst = 0;
        pair = "";
        var tenants = Service.Keys.Order(StringComparer.Ordinal).ToArray();
        for (int i = 0; i < tenants.Length; i++)
            for (int j = i + 1; j < tenants.Length; j++)
            {
                string a = tenants[i], b = tenants[j];
                // within each maximal run of iterations where both are backlogged, the gap is max(D) - min(D) of
                // D = W_a - W_b, D taken at the run's start (before its first iteration) and after each iteration
                double lo = 0, hi = 0;
                bool inRun = false;
                for (int t = 0; t < Timeline.Count; t++)
                {
                    var (wa, ba) = Timeline[t][a];
                    var (wb, bb) = Timeline[t][b];
                    if (!(ba && bb)) { inRun = false; continue; }
                    double d = wa - wb;
                    if (!inRun)
                    {
                        double d0 = t == 0 ? 0 : Timeline[t - 1][a].Service - Timeline[t - 1][b].Service;
                        lo = hi = d0;
                        inRun = true;
                    }
                    lo = Math.Min(lo, d);
                    hi = Math.Max(hi, d);
                    if (hi - lo > worst) { worst = hi - lo; pair = $"{a}/{b} at iteration {t}"; }
                }
            }
        return worst;
    }

    /// <summary>Arrivals of independent tenants, each with a per-iteration probability (Bernoulli), uniform lengths.</summary>
    public static List<TraceRequest> Trace(int seed, int iterations, (string Tenant, double Rate)[] tenants,
        (int Min, int Max) prompt, (int Min, int Max) output)
    {
        var rng = new Random(seed);
        var list = new List<TraceRequest>();
        for (int it = 0; it < iterations; it++)
            foreach (var (tenant, rate) in tenants)
            {
                double r = rate;
                while (r > 0)
                {
                    if (rng.NextDouble() < Math.Min(r, 1))
                        list.Add(new TraceRequest(tenant, it, rng.Next(prompt.Min, prompt.Max + 1), rng.Next(output.Min, output.Max + 1)));
                    r -= 1;
                }
            }
        return list;
    }
}
