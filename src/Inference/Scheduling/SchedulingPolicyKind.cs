namespace Loom.Inference.Scheduling;

/// <summary>Which scheduling policy the engine runs (option Inference:SchedulingPolicy).</summary>
public enum SchedulingPolicyKind
{
    /// <summary>First come, first served (kept for comparison).</summary>
    Fcfs,
    /// <summary>Per-tenant virtual token counters (<see cref="VtcPolicy"/>).</summary>
    Vtc,
}
