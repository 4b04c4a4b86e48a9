using System.Runtime.CompilerServices;

namespace Loom.Inference.Kernels;

/// <summary>The int8 weight layout (<see cref="WeightType.Q8"/>) of a [rows, cols] matrix: panels of 16 rows, each a run
/// of blocks of 32 columns (the last one zero-padded). A block is 544 bytes: 8 quads of 64 bytes (quad q holds columns
/// 4q..4q+3 of the block for the 16 rows, row-major within: byte 4i + j is row i, column 4q + j) then the 16 rows'
/// scales as f16 (as Q8_0 stores them: 1.0625 bytes per weight). A value v in [-128, 127] is stored as the byte v + 128, so that a VNNI u8×s8 dot product reads 4 columns of
/// 8 rows per 32-bit lane with no horizontal sum; the +128 is taken off with the activations' block sums (the AVX2
/// kernel XORs it back to v instead). Weight (r, k)
/// = (byte - 128) · scale[r, k / 32]. A GGUF Q8_0 block (f16 scale, 32 int8) is one row of one block here, exactly.</summary>
public static unsafe class Q8Layout
{
    public const int Block = 32;           // columns per scale
    public const int Rows = 16;            // rows per panel
    public const int QuadBytes = 64;       // 16 rows × 4 columns
    public const int ScaleOffset = 512;    // bytes of values before a block's scales
    public const int BlockBytes = 544;     // 512 values + 16 f16 scales

    public static int BlocksPerRow(int cols) => (cols + Block - 1) / Block;

    public static long Bytes(int rows, int cols) => (long)(rows / Rows) * BlocksPerRow(cols) * BlockBytes;

    /// <summary>Whether a [rows, cols] matrix can be held as Q8 (whole panels of rows).</summary>
    public static bool Fits(int rows, int cols) => rows > 0 && cols > 0 && rows % Rows == 0;

    public static void Check(int rows, int cols)
    {
        if (!Fits(rows, cols)) throw new ArgumentException($"a Q8 matrix needs a positive multiple of {Rows} rows (got [{rows},{cols}])");
    }

    /// <summary>Address of block (panel of row r, block b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* BlockAt(byte* data, int cols, int r, int b) => data + ((long)(r / Rows) * BlocksPerRow(cols) + b) * BlockBytes;

    /// <summary>Offset of row i (within its panel), column j (within its block) in a block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ValueOffset(int i, int j) => (j >> 2) * QuadBytes + i * 4 + (j & 3);

    public static float Scale(byte* data, int cols, int r, int b) => BlockScale(BlockAt(data, cols, r, b), r % Rows);

    /// <summary>The scale of row i (within its panel) of a block, widened from f16 exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BlockScale(byte* blk, int i) => (float)BitConverter.UInt16BitsToHalf(((ushort*)(blk + ScaleOffset))[i]);

    public static float At(byte* data, int cols, int r, int k)
    {
        byte* blk = BlockAt(data, cols, r, k / Block);
        int i = r % Rows;
        return (blk[ValueOffset(i, k % Block)] - 128) * BlockScale(blk, i);
    }

    public static void ReadRow(byte* data, int cols, int r, Span<float> destination)
    {
        int i = r % Rows;
        for (int b = 0, k = 0; k < cols; b++)
        {
            byte* blk = BlockAt(data, cols, r, b);
            float s = BlockScale(blk, i);
            for (int j = 0; j < Block && k < cols; j++, k++) destination[k] = (blk[ValueOffset(i, j)] - 128) * s;
        }
    }

    /// <summary>Stores row r of block b: 32 int8 values (fewer in a partial last block; the rest stay zero) and their scale
    /// (rounded to f16, as Q8_0 stores it; exact for a scale read from a GGUF file).</summary>
    public static void SetBlock(byte* data, int cols, int r, int b, ReadOnlySpan<sbyte> values, float scale)
    {
        byte* blk = BlockAt(data, cols, r, b);
        int i = r % Rows;
        for (int j = 0; j < Block; j++) blk[ValueOffset(i, j)] = (byte)((j < values.Length ? values[j] : 0) + 128);
        ((ushort*)(blk + ScaleOffset))[i] = BitConverter.HalfToUInt16Bits((Half)scale);
    }

    /// <summary>Quantizes one block as GGUF's Q8_0 does: scale = max |v| / 127, value = round(v / scale) (to even); the
    /// scale returned is f32 (input quantization uses it so; a weight block stores it as f16).</summary>
    public static float QuantizeBlock(ReadOnlySpan<float> v, Span<sbyte> q)
    {
        float amax = 0;
        foreach (float x in v) amax = MathF.Max(amax, MathF.Abs(x));
        float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
        for (int j = 0; j < v.Length; j++) q[j] = (sbyte)Math.Clamp(MathF.Round(v[j] * id), -127f, 127f);
        return d;
    }

    /// <summary>Quantizes and stores row r (cols values).</summary>
    public static void SetRow(byte* data, int cols, int r, ReadOnlySpan<float> row)
    {
        Span<sbyte> q = stackalloc sbyte[Block];
        for (int b = 0; b * Block < cols; b++)
        {
            var v = row.Slice(b * Block, Math.Min(Block, cols - b * Block));
            float d = QuantizeBlock(v, q);
            SetBlock(data, cols, r, b, q[..v.Length], d);
        }
    }
}
