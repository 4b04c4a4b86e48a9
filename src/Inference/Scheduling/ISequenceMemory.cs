namespace Loom.Inference.Scheduling;

/// <summary>What the scheduler may ask of memory: all-or-nothing reservations and releases per sequence. It sees
/// sequences and token counts only, never pages.</summary>
public interface ISequenceMemory
{
    /// <summary>Makes room for the sequence to hold <paramref name="tokens"/> positions, including (for a sequence
    /// being admitted) loading and pinning its adapter. False, with nothing taken, when memory lacks room. Throws when
    /// the sequence can never run (e.g. its adapter was unregistered or its files went bad).</summary>
    bool TryReserve(Sequence sequence, int tokens);

    /// <summary>Frees everything the sequence holds (cache pages, adapter pin).</summary>
    void Release(Sequence sequence);
}
