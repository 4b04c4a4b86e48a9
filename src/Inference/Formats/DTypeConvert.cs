using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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

    /// <summary>bfloat16 → float32: the 16 bits become the high half of the float (exact). 16 values at a time
    /// where the CPU has 256-bit vectors.</summary>
    public static void BFloat16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("the destination is shorter than the source", nameof(dst));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref ushort s = ref MemoryMarshal.GetReference(src);
            ref uint d = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(dst));
            for (; i + Vector256<ushort>.Count <= src.Length; i += Vector256<ushort>.Count)
            {
                var (lower, upper) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
                Vector256.ShiftLeft(lower, 16).StoreUnsafe(ref d, (nuint)i);
                Vector256.ShiftLeft(upper, 16).StoreUnsafe(ref d, (nuint)(i + Vector256<uint>.Count));
            }
        }
        for (; i < src.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    /// <summary>False when any value is NaN or infinite (its exponent bits all ones). 8 values at a time where the CPU
    /// has 256-bit vectors.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        const uint exponent = 0x7F80_0000;
        var bits = MemoryMarshal.Cast<float, uint>(values);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref uint b = ref MemoryMarshal.GetReference(bits);
            var mask = Vector256.Create(exponent);
            for (; i + Vector256<uint>.Count <= bits.Length; i += Vector256<uint>.Count)
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref b, (nuint)i) & mask, mask)) return false;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & exponent) == exponent) return false;
        return true;
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
