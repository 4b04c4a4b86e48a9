namespace Loom.Inference.Model;

/// <summary>How a KV cache stores keys and values (Inference:KvCacheFormat). F32: 4 bytes an element. Bf16: bfloat16,
/// 2 bytes, rounded to nearest even when written and widened (exactly) to float32 when attention reads it, so a pool
/// page holds twice the positions; attention over a bf16 cache gives bitwise what the same kernel gives over an f32
/// cache holding the rounded values.</summary>
public enum KvCacheFormat { F32, Bf16 }

public static class KvCacheFormats
{
    /// <summary>Bytes of one key or value element.</summary>
    public static int ElementBytes(this KvCacheFormat format) => format == KvCacheFormat.Bf16 ? sizeof(ushort) : sizeof(float);

    /// <summary>Positions of <paramref name="kvDim"/> elements that a page of <paramref name="pageFloats"/> float32 slots
    /// holds (0: not even one).</summary>
    public static int BlockTokens(this KvCacheFormat format, int pageFloats, int kvDim) =>
        (int)((long)pageFloats * sizeof(float) / format.ElementBytes() / kvDim);

    /// <summary>The configuration spelling: "f32" or "bf16".</summary>
    public static string Name(this KvCacheFormat format) => format == KvCacheFormat.Bf16 ? "bf16" : "f32";
}
