namespace Loom.Inference.Scheduling;

/// <summary>Memory that can keep a preempted sequence's computed tokens outside the pool (host memory) instead of
/// dropping them, so that the sequence resumes without recomputing. The copies may run on another thread while the
/// engine computes: a swapped-out sequence's pages come back to the pool once its copy is done, and a swapped-in
/// sequence is admitted at once but runs only once its copy back is done.</summary>
public interface ISwappingMemory : ISequenceMemory
{
    /// <summary>Moves the sequence's cached tokens out of the pool, freeing its pages (at once, or once the copy is
    /// done) and its adapter pin; the next <see cref="ISequenceMemory.TryReserve"/> for it brings them back, and
    /// <see cref="ISequenceMemory.Release"/> forgets them. False, with nothing changed, when recomputing is cheaper
    /// (a short prefix) or there is no room.</summary>
    bool TrySwapOut(Sequence sequence);

    /// <summary>False while the sequence's cached tokens are being copied back into the pool: it holds its pages but
    /// cannot run in this iteration.</summary>
    bool IsReady(Sequence sequence) => true;

    /// <summary>Asked after <see cref="ISequenceMemory.TryReserve"/> said no: true when swap-out copies under way will
    /// free enough pages for it, so the sequence should wait for them rather than preempt more.</summary>
    bool RoomPending(Sequence sequence, int tokens) => false;
}
