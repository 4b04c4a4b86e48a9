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
    /// <summary>Prompt tokens per forward pass; longer prompts are prefilled in chunks.</summary>
    public int PrefillChunk { get; set; } = 256;
}
