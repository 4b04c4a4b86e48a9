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
