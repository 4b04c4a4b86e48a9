using Loom.Inference.Formats;

namespace Loom.Inference.Kernels;

public sealed unsafe partial class WeightMatrix
{
    /// <summary>Quantizes <paramref name="row"/> (Cols values) into row <paramref name="r"/> of a Q8 matrix.</summary>
    public void SetRowQ8(int r, ReadOnlySpan<float> row)
    {
        if (Type != WeightType.Q8) throw new InvalidOperationException("not a Q8 matrix");
        if ((uint)r >= (uint)Rows || row.Length != Cols) throw new ArgumentException($"row {r} of {Cols} values does not fit [{Rows},{Cols}]");
        Q8Layout.SetRow((byte*)Data, Cols, r, row);
    }

    /// <summary>A copy held as <paramref name="type"/>, converted row by row (never the whole matrix as f32 at once);
    /// F32/BF16 results are packed when this one is packed or Q8 and they can be.</summary>
    public WeightMatrix ConvertTo(WeightType type)
    {
        var m = Allocate(type, Rows, Cols);
        nint dst = (nint)m.Data;
        int cols = Cols;
        Parallel.For(0, Rows, () => new float[cols], (r, _, row) =>
        {
            ReadRow(r, row);
            if (type == WeightType.Q8) Q8Layout.SetRow((byte*)dst, cols, r, row);
            else if (type == WeightType.F32) row.CopyTo(new Span<float>((float*)dst + (long)r * cols, cols));
            else DTypeConvert.FloatToBFloat16(row, new Span<ushort>((ushort*)dst + (long)r * cols, cols));
            return row;
        }, _ => { });
        if (type == WeightType.Q8 || !Packed || !m.CanPack) return m;
        var packed = m.Pack();
        m.Dispose();
        return packed;
    }
}
