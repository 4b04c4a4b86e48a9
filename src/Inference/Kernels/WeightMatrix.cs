using System.Runtime.InteropServices;
using Loom.Inference.Formats;

namespace Loom.Inference.Kernels;

/// <summary>Storage type of a weight matrix as the kernels read it.</summary>
public enum WeightType { F32, BF16 }

/// <summary>A row-major weight matrix [Rows, Cols] (HF layout: [out_features, in_features]) that lives in
/// unmanaged memory: inside a memory-mapped safetensors file, or in a buffer this object owns.</summary>
public sealed unsafe class WeightMatrix : IDisposable
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
    /// <summary>First element: float* for F32, ushort* (bfloat16 bit patterns) for BF16.</summary>
    public void* Data { get; private set; }

    public long ElementCount => (long)Rows * Cols;
    public long ByteCount => ElementCount * (Type == WeightType.F32 ? 4 : 2);

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
    public static WeightMatrix Allocate(WeightType type, int rows, int cols, bool packed = false)
    {
        nuint bytes = (nuint)rows * (nuint)cols * (nuint)(type == WeightType.F32 ? 4 : 2);
        return new(type, rows, cols, NativeMemory.AlignedAlloc(Math.Max(bytes, 64), 64), true, packed);
    }

    /// <summary>Whether the packed layout applies (the fast kernel works on pairs of panels).</summary>
    public bool CanPack => Rows % (2 * PanelRows) == 0;

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

    /// <summary>Index of element (r, k) in the storage.</summary>
    internal long IndexOf(int r, int k) =>
        Packed ? (long)(r / PanelRows) * PanelRows * Cols + (long)k * PanelRows + r % PanelRows : (long)r * Cols + k;

    /// <summary>Element (r, k) as float32.</summary>
    internal float At(int r, int k) =>
        Type == WeightType.F32 ? ((float*)Data)[IndexOf(r, k)] : BitConverter.Int32BitsToSingle(((ushort*)Data)[IndexOf(r, k)] << 16);

    public static WeightMatrix FromFloats(ReadOnlySpan<float> values, int rows, int cols, WeightType type)
    {
        if (values.Length != rows * cols) throw new ArgumentException("size mismatch", nameof(values));
        var m = Allocate(type, rows, cols);
        if (type == WeightType.F32) values.CopyTo(new Span<float>(m.Data, values.Length));
        else DTypeConvert.FloatToBFloat16(values, new Span<ushort>(m.Data, values.Length));
        return m;
    }

    public ReadOnlySpan<float> RowF32(int row) =>
        Type == WeightType.F32 && !Packed ? new ReadOnlySpan<float>((float*)Data + (long)row * Cols, Cols) : throw new InvalidOperationException("not an F32 matrix");

    public ReadOnlySpan<ushort> RowBF16(int row) =>
        Type == WeightType.BF16 && !Packed ? new ReadOnlySpan<ushort>((ushort*)Data + (long)row * Cols, Cols) : throw new InvalidOperationException("not a BF16 matrix");

    /// <summary>Copies one row out as float32 (embedding lookup).</summary>
    public void ReadRow(int row, Span<float> destination)
    {
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
