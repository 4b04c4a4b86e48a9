namespace Loom.Inference.Model.Gpu;

/// <summary>Bytes the GPU backend copied device → host, by what they were, since it was built (tests read them to see
/// what a step brings back; decision 010).</summary>
public sealed class DeviceTransfers
{
    private long _logits, _hidden, _kv, _samples;

    /// <summary>Logits rows (a forward pass's, or the rows the host samples).</summary>
    public long LogitsBytes => Interlocked.Read(ref _logits);
    /// <summary>Hidden states (embeddings).</summary>
    public long HiddenBytes => Interlocked.Read(ref _hidden);
    /// <summary>New keys and values written back to the host pool.</summary>
    public long KvBytes => Interlocked.Read(ref _kv);
    /// <summary>Sampled tokens, their logprobs and alternatives.</summary>
    public long SampleBytes => Interlocked.Read(ref _samples);

    internal void Logits(long bytes) => Interlocked.Add(ref _logits, bytes);
    internal void Hidden(long bytes) => Interlocked.Add(ref _hidden, bytes);
    internal void Kv(long bytes) => Interlocked.Add(ref _kv, bytes);
    internal void Samples(long bytes) => Interlocked.Add(ref _samples, bytes);

    public override string ToString() => $"logits {LogitsBytes} B, hidden {HiddenBytes} B, kv {KvBytes} B, samples {SampleBytes} B";
}
