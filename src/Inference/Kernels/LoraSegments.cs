using Loom.Inference.Memory;

namespace Loom.Inference.Kernels;

/// <summary>Builds the segment list of a batch for <see cref="LoraKernel.Apply"/> from its sequences, in batch order:
/// consecutive sequences with the same adapter form one segment, so a scheduler that orders sequences by adapter
/// gets one segment per adapter. No allocation.</summary>
public static class LoraSegments
{
    /// <summary>Writes the segments of a batch whose sequence i covers tokens [starts[i], starts[i] + counts[i]) and
    /// uses adapters[i] (null: base model). Returns the number of segments written.</summary>
    public static int Build(Span<LoraSegment> segments, ReadOnlySpan<int> starts, ReadOnlySpan<int> counts,
        ReadOnlySpan<AdapterResidency?> adapters)
    {
        int n = 0;
        for (int i = 0; i < starts.Length; i++)
        {
            if (counts[i] == 0) continue;
            if (n > 0 && ReferenceEquals(segments[n - 1].Adapter, adapters[i]) && segments[n - 1].Start + segments[n - 1].Count == starts[i])
            {
                segments[n - 1] = segments[n - 1] with { Count = segments[n - 1].Count + counts[i] };
                continue;
            }
            if (n == segments.Length) throw new ArgumentException($"more than {segments.Length} segments");
            segments[n++] = new LoraSegment(starts[i], counts[i], adapters[i]);
        }
        return n;
    }

    /// <summary>Largest rank among the segments' adapters (0 if none): the scratch needs tokens × this many floats.</summary>
    public static int MaxRank(ReadOnlySpan<LoraSegment> segments)
    {
        int r = 0;
        foreach (var s in segments) if (s.Adapter is { } a) r = Math.Max(r, a.Rank);
        return r;
    }
}
