namespace Loom.Inference.Model;

/// <summary>One sequence's key/value cache as the attention kernel reads it: positions are grouped in
/// blocks of <see cref="BlockSize"/> tokens; a block of one layer holds BlockSize rows of KvDim floats for
/// keys and as many for values. Where the blocks live (private arrays now, a shared paged pool later)
/// is the implementation's business.</summary>
public interface IKvCache
{
    int BlockSize { get; }
    int KvDim { get; }
    int Layers { get; }
    /// <summary>Positions holding valid keys and values.</summary>
    int Length { get; }
    /// <summary>Positions that can be written without allocating.</summary>
    int Capacity { get; }
    /// <summary>Ensures capacity for at least <paramref name="tokens"/> positions.</summary>
    void Reserve(int tokens);
    /// <summary>(BlockSize, KvDim) keys of one layer's block.</summary>
    Span<float> Keys(int layer, int block);
    /// <summary>(BlockSize, KvDim) values of one layer's block.</summary>
    Span<float> Values(int layer, int block);
    /// <summary>Marks <paramref name="count"/> more positions valid (after a forward pass wrote them).</summary>
    void Advance(int count);
    /// <summary>Forgets positions past <paramref name="length"/> (keeps the memory).</summary>
    void Truncate(int length);
}

/// <summary>A KV cache with its own blocks on the managed heap. Each block: (layers, 2, BlockSize, KvDim).</summary>
public sealed class KvCache(int layers, int kvDim, int maxTokens, int blockSize = 16) : IKvCache
{
    private readonly List<float[]> _blocks = [];

    public int BlockSize { get; } = blockSize;
    public int KvDim { get; } = kvDim;
    public int Layers { get; } = layers;
    public int MaxTokens { get; } = maxTokens;
    public int Length { get; private set; }
    public int Capacity => _blocks.Count * BlockSize;

    public static KvCache For(ModelConfig config, int maxTokens, int blockSize = 16) =>
        new(config.NumLayers, config.KvDim, maxTokens, blockSize);

    public void Reserve(int tokens)
    {
        if (tokens > MaxTokens)
            throw new InvalidOperationException($"sequence of {tokens} tokens exceeds the cache limit of {MaxTokens}");
        while (Capacity < tokens) _blocks.Add(new float[Layers * 2 * BlockSize * KvDim]);
    }

    public Span<float> Keys(int layer, int block) => _blocks[block].AsSpan(layer * 2 * BlockSize * KvDim, BlockSize * KvDim);

    public Span<float> Values(int layer, int block) => _blocks[block].AsSpan((layer * 2 + 1) * BlockSize * KvDim, BlockSize * KvDim);

    public void Advance(int count)
    {
        if (Length + count > Capacity) throw new InvalidOperationException("advance past reserved capacity");
        Length += count;
    }

    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);
}
