using System.Runtime.InteropServices;
using Loom.Inference.Formats;

namespace Loom.Inference.Kernels;

/// <summary>Storage type of a weight matrix as the kernels read it. Q8: int8 values in blocks of 32 along a row with one
/// f16 scale each, in the panel layout of <see cref="Q8Layout"/> (GGUF's Q8_0 maps onto it without loss).</summary>
public enum WeightType { F32, BF16, Q8 }

/// <summary>A row-major weight matrix [Rows, Cols] (HF layout: [out_features, in_features]) that lives in
/// unmanaged memory: inside a memory-mapped safetensors file, or in a buffer this object owns.</summary>
public sealed unsafe partial class WeightMatrix : IDisposable
{
    private void* _owned;

    /// <summary>Rows per panel of the packed layout.</summary>
    public const int PanelRows = 16;

    public WeightType Type { get; }
    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Packed layout: panels of 16 rows, each stored column by column ([Cols][16]), so a matmul reads
    /// 16 outputs' weights with one vector load and never needs a horizontal sum. Row-major otherwise.</summary>
    public bool Packed { get; }
    /// <summary>First element: float* for F32, ushort* (bfloat16 bit patterns) for BF16, the first panel's first block for Q8.</summary>
    public void* Data { get; private set; }

    public long ElementCount => (long)Rows * Cols;
    public long ByteCount => StorageBytes(Type, Rows, Cols);

    private static long StorageBytes(WeightType type, int rows, int cols) => type switch
    {
        WeightType.F32 => (long)rows * cols * 4,
        WeightType.BF16 => (long)rows * cols * 2,
        _ => Q8Layout.Bytes(rows, cols),
    };

    private WeightMatrix(WeightType type, int rows, int cols, void* data, bool owned, bool packed = false)
    {
        Packed = packed;
        Type = type;
        Rows = rows;
        Cols = cols;
        Data = data;
        if (owned) _owned = data;
    }

    /// <summary>Wraps memory owned elsewhere (e.g. a mapping that outlives this matrix).</summary>
    public static WeightMatrix Borrow(WeightType type, int rows, int cols, void* data) => new(type, rows, cols, data, false);

    /// <summary>Allocates an uninitialised 64-byte aligned matrix.</summary>
    /// <summary>Allocates an uninitialised 64-byte aligned matrix (Q8: always in its panel layout, zeroed).</summary>
    public static WeightMatrix Allocate(WeightType type, int rows, int cols, bool packed = false)
    {
        if (type == WeightType.Q8) Q8Layout.Check(rows, cols);
        nuint bytes = (nuint)StorageBytes(type, rows, cols);
        var data = NativeMemory.AlignedAlloc(Math.Max(bytes, 64), 64);
        if (type == WeightType.Q8) NativeMemory.Clear(data, bytes);
        return new(type, rows, cols, data, true, packed || type == WeightType.Q8);
    }

    /// <summary>Whether the packed layout applies (the fast kernel works on pairs of panels).</summary>
    public bool CanPack => Type != WeightType.Q8 && Rows % (2 * PanelRows) == 0;

    /// <summary>A packed copy (see <see cref="Packed"/>).</summary>
    public WeightMatrix Pack()
    {
        if (Packed) throw new InvalidOperationException("already packed");
        if (!CanPack) throw new InvalidOperationException($"{Rows} rows is not a multiple of {2 * PanelRows}");
        var m = Allocate(Type, Rows, Cols, packed: true);
        nint src = (nint)Data, dst = (nint)m.Data;
        int cols = Cols;
        bool f32 = Type == WeightType.F32;
        Parallel.For(0, Rows / PanelRows, p =>
        {
            long baseIndex = (long)p * PanelRows * cols;
            for (int i = 0; i < PanelRows; i++)
            {
                long row = ((long)p * PanelRows + i) * cols;
                for (int k = 0; k < cols; k++)
                {
                    if (f32) ((float*)dst)[baseIndex + (long)k * PanelRows + i] = ((float*)src)[row + k];
                    else ((ushort*)dst)[baseIndex + (long)k * PanelRows + i] = ((ushort*)src)[row + k];
                }
            }
        });
        return m;
    }

    /// <summary>Index of element (r, k) in the storage (F32, BF16).</summary>
    internal long IndexOf(int r, int k) =>
        Packed ? (long)(r / PanelRows) * PanelRows * Cols + (long)k * PanelRows + r % PanelRows : (long)r * Cols + k;

    /// <summary>Element (r, k) as float32.</summary>
    internal float At(int r, int k) => Type switch
    {
        WeightType.F32 => ((float*)Data)[IndexOf(r, k)],
        WeightType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)Data)[IndexOf(r, k)] << 16),
        _ => Q8Layout.At((byte*)Data, Cols, r, k),
    };

    public static WeightMatrix FromFloats(ReadOnlySpan<float> values, int rows, int cols, WeightType type)
    {
        if (values.Length != rows * cols) throw new ArgumentException("size mismatch", nameof(values));
        var m = Allocate(type, rows, cols);
        if (type == WeightType.F32) values.CopyTo(new Span<float>(m.Data, values.Length));
        else if (type == WeightType.BF16) DTypeConvert.FloatToBFloat16(values, new Span<ushort>(m.Data, values.Length));
        else for (int r = 0; r < rows; r++) m.SetRowQ8(r, values.Slice(r * cols, cols));
        return m;
    }

    public ReadOnlySpan<float> RowF32(int row) =>
        Type == WeightType.F32 && !Packed ? new ReadOnlySpan<float>((float*)Data + (long)row * Cols, Cols) : throw new InvalidOperationException("not an F32 matrix");

    public ReadOnlySpan<ushort> RowBF16(int row) =>
        Type == WeightType.BF16 && !Packed ? new ReadOnlySpan<ushort>((ushort*)Data + (long)row * Cols, Cols) : throw new InvalidOperationException("not a BF16 matrix");

    /// <summary>Copies one row out as float32 (embedding lookup).</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if (Type == WeightType.Q8)
        {
            Q8Layout.ReadRow((byte*)Data, Cols, row, destination);
            return;
        }
        if (Packed)
        {
            for (int k = 0; k < Cols; k++) destination[k] = At(row, k);
            return;
        }
        if (Type == WeightType.F32) RowF32(row).CopyTo(destination);
        else DTypeConvert.BFloat16ToFloat(RowBF16(row), destination);
    }

    public float[] ToFloats()
    {
        var result = new float[ElementCount];
        for (int r = 0; r < Rows; r++) ReadRow(r, result.AsSpan(r * Cols, Cols));
        return result;
    }

    public void Dispose()
    {
        if (_owned != null)
        {
            NativeMemory.AlignedFree(_owned);
            _owned = null;
        }
        Data = null;
    }
}
