using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Loom.Cluster;

/// <summary>
/// Bounds the generations an engine of this process holds at once (running and waiting), per base model, at
/// Cluster:MaxGenerationsPerEngine. One past the bound is refused at once instead of queued: under sustained overload
/// the engine's queue, the time a request spends in it and the memory it takes stay bounded, and the client gets a
/// retryable 503 with Retry-After (an API node first tries the other nodes serving the model).
/// </summary>
public sealed class EngineAdmission(IOptions<ClusterOptions> options, ClusterMeters meters)
{
    private readonly ConcurrentDictionary<string, Counter> _held = new(StringComparer.Ordinal);

    /// <summary>A lease on one generation's place in <paramref name="baseModel"/>'s engine (dispose it when the
    /// generation ends), or null when the engine already holds the most allowed.</summary>
    public IDisposable? TryEnter(string baseModel)
    {
        var counter = _held.GetOrAdd(baseModel, _ => new Counter());
        if (Interlocked.Increment(ref counter.Value) <= options.Value.MaxGenerationsPerEngine) return new Lease(counter);
        Interlocked.Decrement(ref counter.Value);
        meters.Refused();
        return null;
    }

    /// <summary>Generations of <paramref name="baseModel"/> this process's engine holds now.</summary>
    public int Held(string baseModel) => _held.TryGetValue(baseModel, out var c) ? Volatile.Read(ref c.Value) : 0;

    /// <summary>The refusal, as an API node answers it.</summary>
    public InferenceUnavailableException Busy(string baseModel) => Busy(baseModel, options.Value.RetryAfter);

    public static InferenceUnavailableException Busy(string baseModel, TimeSpan retryAfter) =>
        new($"Every engine serving '{baseModel}' is at capacity. Please try again in {Math.Max(1, Math.Ceiling(retryAfter.TotalSeconds)):0}s.", retryAfter);

    private sealed class Counter { public int Value; }

    private sealed class Lease(Counter counter) : IDisposable
    {
        private int _released;
        public void Dispose() { if (Interlocked.Exchange(ref _released, 1) == 0) Interlocked.Decrement(ref counter.Value); }
    }
}
