using System.Runtime.InteropServices;
using Loom.Inference.Formats;

namespace Loom.Inference.Model;

/// <summary>One sequence's key/value cache as the attention kernel reads it: positions are grouped in
/// blocks of <see cref="BlockSize"/> tokens; a block of one layer holds BlockSize rows of KvDim elements for
/// keys and as many for values, float32 or bfloat16 (<see cref="Format"/>). Where the blocks live (private arrays,
/// a shared paged pool) is the implementation's business, but a block's memory must not move while the cache holds it
/// (native pool pages, pinned arrays): the attention kernels gather the rows' addresses once per call.</summary>
public interface IKvCache
{
    int BlockSize { get; }
    int KvDim { get; }
    int Layers { get; }
    /// <summary>How the elements are stored: F32 blocks are read with <see cref="Keys"/> and <see cref="Values"/>, Bf16
    /// blocks with <see cref="Keys16"/> and <see cref="Values16"/> (the other pair throws).</summary>
    KvCacheFormat Format { get; }
    /// <summary>Positions holding valid keys and values.</summary>
    int Length { get; }
    /// <summary>Positions that can be written without allocating.</summary>
    int Capacity { get; }
    /// <summary>Ensures capacity for at least <paramref name="tokens"/> positions.</summary>
    void Reserve(int tokens);
    /// <summary>(BlockSize, KvDim) float32 keys of one layer's block.</summary>
    Span<float> Keys(int layer, int block);
    /// <summary>(BlockSize, KvDim) float32 values of one layer's block.</summary>
    Span<float> Values(int layer, int block);
    /// <summary>(BlockSize, KvDim) bfloat16 keys of one layer's block.</summary>
    Span<ushort> Keys16(int layer, int block);
    /// <summary>(BlockSize, KvDim) bfloat16 values of one layer's block.</summary>
    Span<ushort> Values16(int layer, int block);
    /// <summary>Stores the (KvDim) key and value rows of <paramref name="position"/> at <paramref name="layer"/> in the
    /// cache's format (bf16: rounded to nearest even).</summary>
    void Write(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values);
    /// <summary>Marks <paramref name="count"/> more positions valid (after a forward pass wrote them).</summary>
    void Advance(int count);
    /// <summary>Forgets positions past <paramref name="length"/> (keeps the memory).</summary>
    void Truncate(int length);
}

/// <summary>Element access shared by the caches: rows written and read in the cache's format.</summary>
public static class KvRows
{
    /// <summary><see cref="IKvCache.Write"/> for a cache whose blocks are its Keys/Values (f32) or Keys16/Values16 (bf16,
    /// rounded to nearest even by <see cref="DTypeConvert.FloatToBFloat16(ReadOnlySpan{float}, Span{ushort})"/>).</summary>
    public static void Store(IKvCache cache, int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        int kvDim = cache.KvDim, block = position / cache.BlockSize, at = position % cache.BlockSize * kvDim;
        if (cache.Format == KvCacheFormat.Bf16)
        {
            DTypeConvert.FloatToBFloat16(keys[..kvDim], cache.Keys16(layer, block).Slice(at, kvDim));
            DTypeConvert.FloatToBFloat16(values[..kvDim], cache.Values16(layer, block).Slice(at, kvDim));
        }
        else
        {
            keys[..kvDim].CopyTo(cache.Keys(layer, block).Slice(at, kvDim));
            values[..kvDim].CopyTo(cache.Values(layer, block).Slice(at, kvDim));
        }
    }

    /// <summary>Element <paramref name="index"/> of the (KvDim) key row of <paramref name="position"/>, as float32.</summary>
    public static float KeyAt(this IKvCache cache, int layer, int position, int index) => At(cache, layer, position, index, keys: true);

    /// <summary>Element <paramref name="index"/> of the (KvDim) value row of <paramref name="position"/>, as float32.</summary>
    public static float ValueAt(this IKvCache cache, int layer, int position, int index) => At(cache, layer, position, index, keys: false);

    private static float At(IKvCache cache, int layer, int position, int index, bool keys)
    {
        int block = position / cache.BlockSize, at = position % cache.BlockSize * cache.KvDim + index;
        if (cache.Format == KvCacheFormat.Bf16)
            return BitConverter.Int32BitsToSingle((keys ? cache.Keys16(layer, block) : cache.Values16(layer, block))[at] << 16);
        return (keys ? cache.Keys(layer, block) : cache.Values(layer, block))[at];
    }

    internal static InvalidOperationException WrongFormat(KvCacheFormat format) =>
        new($"this KV cache stores {format.Name()}: read it through {(format == KvCacheFormat.Bf16 ? "Keys16/Values16" : "Keys/Values")}");
}

/// <summary>A KV cache with its own blocks on the managed heap. Each block: (layers, 2, BlockSize, KvDim) elements of
/// <paramref name="format"/>.</summary>
public sealed class KvCache(int layers, int kvDim, int maxTokens, int blockSize = 16, KvCacheFormat format = KvCacheFormat.F32) : IKvCache
{
    private readonly List<float[]> _blocks = []; // bf16: the elements two to a float slot

    public int BlockSize { get; } = blockSize;
    public int KvDim { get; } = kvDim;
    public int Layers { get; } = layers;
    public KvCacheFormat Format { get; } = format;
    public int MaxTokens { get; } = maxTokens;
    public int Length { get; private set; }
    public int Capacity => _blocks.Count * BlockSize;

    public static KvCache For(ModelConfig config, int maxTokens, int blockSize = 16, KvCacheFormat format = KvCacheFormat.F32) =>
        new(config.NumLayers, config.KvDim, maxTokens, blockSize, format);

    public void Reserve(int tokens)
    {
        if (tokens > MaxTokens)
            throw new InvalidOperationException($"sequence of {tokens} tokens exceeds the cache limit of {MaxTokens}");
        int elements = Layers * 2 * BlockSize * KvDim;
        // pinned: the attention kernels take the blocks' addresses (IKvCache)
        while (Capacity < tokens) _blocks.Add(GC.AllocateArray<float>(Format == KvCacheFormat.Bf16 ? (elements + 1) / 2 : elements, pinned: true));
    }

    public Span<float> Keys(int layer, int block) =>
        Format == KvCacheFormat.F32 ? _blocks[block].AsSpan(layer * 2 * BlockSize * KvDim, BlockSize * KvDim) : throw KvRows.WrongFormat(Format);

    public Span<float> Values(int layer, int block) =>
        Format == KvCacheFormat.F32 ? _blocks[block].AsSpan((layer * 2 + 1) * BlockSize * KvDim, BlockSize * KvDim) : throw KvRows.WrongFormat(Format);

    public Span<ushort> Keys16(int layer, int block) => Half16(block).Slice(layer * 2 * BlockSize * KvDim, BlockSize * KvDim);

    public Span<ushort> Values16(int layer, int block) => Half16(block).Slice((layer * 2 + 1) * BlockSize * KvDim, BlockSize * KvDim);

    private Span<ushort> Half16(int block) =>
        Format == KvCacheFormat.Bf16 ? MemoryMarshal.Cast<float, ushort>(_blocks[block].AsSpan()) : throw KvRows.WrongFormat(Format);

    public void Write(int layer, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values) =>
        KvRows.Store(this, layer, position, keys, values);

    public void Advance(int count)
    {
        if (Length + count > Capacity) throw new InvalidOperationException("advance past reserved capacity");
        Length += count;
    }

    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);
}
