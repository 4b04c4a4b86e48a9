using Loom.Inference.Model;

namespace Loom.Inference.Engine;

/// <summary>Configuration section "Inference".</summary>
public sealed class InferenceOptions
{
    public const string SectionName = "Inference";

    /// <summary>A Hugging Face model folder (config.json, safetensors, tokenizer.json). Null: no model served.</summary>
    public string? ModelDirectory { get; set; }
    /// <summary>Weight storage in memory: Auto keeps what the checkpoint has (F16 becomes F32), or force F32 / BF16.</summary>
    public WeightFormat WeightFormat { get; set; } = WeightFormat.Auto;
    /// <summary>Longest prompt + completion (also capped by the model's max_position_embeddings).</summary>
    public int MaxContext { get; set; } = 4096;
    /// <summary>Prompt tokens of one sequence per forward pass; longer prompts are prefilled in chunks.</summary>
    public int PrefillChunk { get; set; } = 256;
    /// <summary>Bytes of the unified page pool (KV cache and resident adapters share it).</summary>
    public long PoolBytes { get; set; } = 512L << 20;
    /// <summary>Tokens (decodes + prefill chunks of all sequences) per forward pass.</summary>
    public int TokenBudget { get; set; } = 512;
    /// <summary>Sequences in the running batch.</summary>
    public int MaxRunningSequences { get; set; } = 64;
    /// <summary>Bytes of adapter weights kept in host memory (least recently used dropped first).</summary>
    public long HostAdapterCacheBytes { get; set; } = 1L << 30;
    /// <summary>Largest LoRA rank accepted at registration.</summary>
    public int MaxLoraRank { get; set; } = 128;

    /// <summary>The first problem with these options, or null.</summary>
    public string? Problem() =>
        MaxContext < 1 ? "Inference:MaxContext must be positive"
        : PrefillChunk < 1 ? "Inference:PrefillChunk must be positive"
        : PoolBytes < 1 ? "Inference:PoolBytes must be positive"
        : TokenBudget < 1 ? "Inference:TokenBudget must be positive"
        : MaxRunningSequences < 1 ? "Inference:MaxRunningSequences must be positive"
        : HostAdapterCacheBytes < 0 ? "Inference:HostAdapterCacheBytes must not be negative"
        : MaxLoraRank < 1 ? "Inference:MaxLoraRank must be positive"
        : null;
}
