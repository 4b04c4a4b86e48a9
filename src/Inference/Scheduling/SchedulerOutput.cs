namespace Loom.Inference.Scheduling;

/// <summary>Tokens [Start, Start + Count) of a sequence to run in this iteration. When the chunk reaches the end of
/// the sequence's tokens, its logits give the next token.</summary>
public readonly record struct ScheduledChunk(Sequence Sequence, int Start, int Count)
{
    public bool Samples => Start + Count == Sequence.TokenCount;
}

/// <summary>One iteration's decisions. Reused from iteration to iteration.</summary>
public sealed class SchedulerOutput
{
    /// <summary>What to run: decodes first, then prefill chunks of running sequences, then newly admitted ones.</summary>
    public List<ScheduledChunk> Chunks { get; } = [];
    /// <summary>Sequences sent back to the queue this iteration (their cache was swapped to host memory or freed for recompute).</summary>
    public List<Sequence> Preempted { get; } = [];
    /// <summary>Sequences that cannot grow even with the whole pool to themselves: the engine ends them (length).</summary>
    public List<Sequence> OutOfMemory { get; } = [];
    /// <summary>Sequences that failed at admission (unknown or broken adapter), with the reason.</summary>
    public List<(Sequence Sequence, Exception Error)> Failed { get; } = [];
    public int Tokens { get; internal set; }

    internal void Clear()
    {
        Chunks.Clear();
        Preempted.Clear();
        OutOfMemory.Clear();
        Failed.Clear();
        Tokens = 0;
    }
}
