using System.Runtime.InteropServices;

namespace Loom.Inference.Scheduling;

public enum SequenceStatus { Waiting, Running, Finished }

/// <summary>A request as the scheduler sees it: its tokens (prompt, then what was generated), how many of them have
/// keys and values in the cache, and an opaque <see cref="Handle"/> to the memory behind it that only the engine
/// reads. Preemption by recompute sets <see cref="Computed"/> back to 0: the prompt and the generated tokens are
/// then prefilled again.</summary>
public sealed class Sequence(long id, IReadOnlyList<int> prompt, int maxTotalTokens, string? adapterId, string? tenantId = null, int priority = 0)
{
    private readonly List<int> _tokens = [.. prompt];

    public long Id { get; } = id;
    public string? AdapterId { get; } = adapterId;
    public string? TenantId { get; } = tenantId;
    public int Priority { get; } = priority;
    /// <summary>Arrival order, set when the scheduler first sees the sequence.</summary>
    public long Arrival { get; internal set; } = -1;
    public int PromptLength { get; } = prompt.Count;
    /// <summary>Most tokens (prompt + generated) the sequence may reach.</summary>
    public int MaxTotalTokens { get; } = maxTotalTokens;
    public SequenceStatus Status { get; internal set; }
    /// <summary>Tokens whose keys and values are in the cache.</summary>
    public int Computed { get; internal set; }
    public int TokenCount => _tokens.Count;
    /// <summary>Tokens still to run through the model before the next token can be sampled.</summary>
    public int Pending => _tokens.Count - Computed;
    public int Generated => _tokens.Count - PromptLength;
    public int Preemptions { get; internal set; }
    /// <summary>The engine's resources for this sequence (cache, adapter pin). Opaque to the scheduler.</summary>
    public object? Handle { get; set; }

    /// <summary>Tokens [start, start + count).</summary>
    public ReadOnlySpan<int> Tokens(int start, int count) => CollectionsMarshal.AsSpan(_tokens).Slice(start, count);

    /// <summary>Adds a sampled token; it is fed to the model in the next iteration.</summary>
    public void Append(int token)
    {
        if (_tokens.Count >= MaxTotalTokens) throw new InvalidOperationException($"sequence {Id} is at its limit of {MaxTotalTokens} tokens");
        _tokens.Add(token);
    }
}
