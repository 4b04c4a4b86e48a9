namespace Loom.Data.Entities;

/// <summary>A base model served by the platform, shared by all tenants (not tenant-owned).</summary>
public class BaseModel
{
    public Guid Id { get; set; }
    /// <summary>The public model id used in API requests, e.g. <c>loom-demo</c>.</summary>
    public required string Name { get; set; }
    /// <summary>Folder of the Hugging Face checkpoint (config.json, safetensors, tokenizer files).</summary>
    public required string Path { get; set; }
    public int ContextLength { get; set; }
    /// <summary>How the inference nodes hold its weights (Auto, F32, BF16), as configured where it is served.</summary>
    public string WeightFormat { get; set; } = "Auto";
    public DateTimeOffset CreatedAt { get; set; }
}
