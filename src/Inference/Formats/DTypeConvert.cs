using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Loom.Inference.Formats;

/// <summary>Conversions between the floating point storage types.</summary>
public static class DTypeConvert
{
    public static void ToFloat(string file, TensorInfo t, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (t.DType)
        {
            case TensorDType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case TensorDType.F16: TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), dst); break;
            case TensorDType.BF16: BFloat16ToFloat(MemoryMarshal.Cast<byte, ushort>(src), dst); break;
            default: throw new ModelFormatException(file, $"tensor '{t.Name}': dtype {TensorDTypes.ToName(t.DType)} is not a floating point weight type");
        }
    }

    public static void BFloat16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    /// <summary>Round to nearest even, as torch's .to(torch.bfloat16) does; NaN stays NaN.</summary>
    public static ushort FloatToBFloat16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    public static void FloatToBFloat16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = FloatToBFloat16(src[i]);
    }
}
