namespace Loom.Inference.Model;

/// <summary>llama3-style frequency-dependent RoPE scaling (rope_scaling.rope_type = "llama3").</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>The shape of a Llama-family decoder (llama, mistral, qwen2), read from HF config.json.</summary>
public sealed record ModelConfig
{
    public required string ModelType { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public Llama3RopeScaling? RopeScaling { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on the q, k and v projections (qwen2; llama with attention_bias).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on the output projection (llama with attention_bias).</summary>
    public bool OutputBias { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;

    /// <summary>Number of parameters (tied embeddings counted once).</summary>
    public long ParameterCount
    {
        get
        {
            long perLayer = (long)HiddenSize * QDim * 2 + (long)HiddenSize * KvDim * 2
                + 3L * HiddenSize * IntermediateSize + 2L * HiddenSize;
            if (QkvBias) perLayer += QDim + 2 * KvDim;
            if (OutputBias) perLayer += HiddenSize;
            long emb = (long)VocabSize * HiddenSize;
            return perLayer * NumLayers + emb * (TieWordEmbeddings ? 1 : 2) + HiddenSize;
        }
    }

    /// <summary>config.json of a Hugging Face folder, or the metadata of the folder's .gguf file when it has no config.json
    /// and no safetensors.</summary>
    public static ModelConfig Load(string modelDirectory)
    {
        if (!File.Exists(Path.Combine(modelDirectory, "config.json")) && !ModelWeights.HasSafetensors(modelDirectory)
            && Formats.GgufFile.FindIn(modelDirectory) is { } gguf)
        {
            using var f = Formats.GgufFile.Open(gguf);
            return Formats.GgufConfigReader.Read(f);
        }
        return Formats.HfConfigReader.Read(modelDirectory);
    }
}
