namespace Loom.Inference.Scheduling;

/// <summary>Memory that can keep a preempted sequence's computed tokens outside the pool (host memory) instead of
/// dropping them, so that the sequence resumes without recomputing.</summary>
public interface ISwappingMemory : ISequenceMemory
{
    /// <summary>Moves the sequence's cached tokens out of the pool, freeing its pages and adapter pin; the next
    /// <see cref="ISequenceMemory.TryReserve"/> for it brings them back, and <see cref="ISequenceMemory.Release"/>
    /// forgets them. False, with nothing changed, when recomputing is cheaper (a short prefix) or there is no room.</summary>
    bool TrySwapOut(Sequence sequence);
}
