namespace Loom.Inference.Scheduling;

/// <summary>What the scheduler may ask of memory: all-or-nothing reservations and releases per sequence. It sees
/// sequences and token counts only, never pages.</summary>
public interface ISequenceMemory
{
    /// <summary>Makes room for the sequence to hold <paramref name="tokens"/> positions, including (for a sequence
    /// being admitted) loading and pinning its adapter. <see cref="Reservation.NoRoom"/> or
    /// <see cref="Reservation.NotYet"/> with nothing taken. Throws when the sequence can never run (e.g. its adapter was
    /// unregistered or its files went bad).</summary>
    Reservation TryReserve(Sequence sequence, int tokens);

    /// <summary>Asked for a waiting sequence when no running slot is free, before the policy may preempt for it: false
    /// while it could not start even with a slot for a reason of its own (its adapter is still being read), so that
    /// nothing is preempted for it. May start that work (the read).</summary>
    bool CanStart(Sequence sequence) => true;

    /// <summary>Asked for a waiting sequence before admission sizes its first chunk: memory may attach keys and values
    /// computed already (a cached prefix), advancing <see cref="Sequence.Computed"/>, and answers
    /// <see cref="Reservation.NotYet"/> while a running sequence is computing the same prefix (the sequence waits for it
    /// rather than computing it again). Nothing is reserved here.</summary>
    Reservation Attach(Sequence sequence) => Reservation.Reserved;

    /// <summary>Frees everything the sequence holds (cache pages, adapter pin).</summary>
    void Release(Sequence sequence);
}

/// <summary>The answer of <see cref="ISequenceMemory.TryReserve"/>.</summary>
public enum Reservation
{
    /// <summary>The room is reserved (and, for a sequence being admitted, its adapter pinned).</summary>
    Reserved,
    /// <summary>Memory lacks room. Preempting running sequences may make it.</summary>
    NoRoom,
    /// <summary>The sequence cannot be placed yet for a reason of its own (its adapter is still being read from disk).
    /// Preempting others would not help; the sequences queued behind it may go first.</summary>
    NotYet,
}
