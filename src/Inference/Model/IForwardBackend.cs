namespace Loom.Inference.Model;

/// <summary>Another place to run <see cref="Transformer.Forward"/> than the CPU kernels (the GPU backend): it takes the
/// same <see cref="ForwardState"/> and leaves the same results in it (logits, hidden states, KV written into the caches,
/// caches advanced), so the engine, scheduler and pool above it do not change.</summary>
public interface IForwardBackend : IDisposable
{
    /// <summary>What runs the forward pass, for logs and /admin/engine (e.g. "cuda: NVIDIA H200 (143771 MiB)").</summary>
    string Description { get; }
    void Forward(Transformer model, ForwardState state, LogitsMode mode);
    /// <summary>A KV cache this backend can read (the GPU backend reads pool pages, so its caches are paged).</summary>
    IKvCache CreateCache(Transformer model, int maxTokens);
}

/// <summary>A backend that samples on the device, so that only sampled tokens (and logprobs when asked) come back per
/// step instead of logits rows (decision 010).</summary>
public interface IDeviceSampling
{
    /// <summary>The forward pass for the last position of each sequence (as <see cref="IForwardBackend.Forward"/> with
    /// <see cref="LogitsMode.LastPerSequence"/>), then each row sampled as <paramref name="batch"/>'s Rows say: rows on the
    /// device get their results in the batch; the logits of host rows, and of device rows the device gave back
    /// (<see cref="Sampling.DeviceSample.NeedsHost"/>), are in the state (<see cref="ForwardState.Logits"/>); skipped rows
    /// bring back nothing.</summary>
    void ForwardSample(Transformer model, ForwardState state, Sampling.DeviceSampleBatch batch);
}
