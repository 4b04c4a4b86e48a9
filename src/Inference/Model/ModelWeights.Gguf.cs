using Loom.Inference.Formats;
using Loom.Inference.Kernels;

namespace Loom.Inference.Model;

public sealed partial class ModelWeights
{
    /// <summary>Loads a llama-architecture GGUF file (F32, F16, BF16 or Q8_0 tensors; llama.cpp's names token_embd,
    /// blk.N.attn_q/k/v/output, ffn_gate/up/down, attn_norm, ffn_norm, output_norm, output). llama.cpp's converter
    /// permutes the rows of q and k within each head for its interleaved RoPE (HF row h·hd + s·hd/2 + i is stored at
    /// h·hd + 2i + s); the load puts them back in HF order. Auto keeps F32 and BF16 as stored (F16 becomes F32) and Q8_0
    /// as Q8, each block copied exactly (the f16 scale widened to f32); a stored type is used in place when no
    /// conversion or permutation is needed.</summary>
    public static ModelWeights LoadGguf(string path, ModelConfig config, WeightFormat format = WeightFormat.Auto, bool? pack = null)
    {
        bool doPack = pack ?? PackingPays;
        var f = GgufFile.Open(path);
        var owned = new List<WeightMatrix>();
        try
        {
            WeightMatrix Matrix(string name, int rows, int cols, int permuteHeads)
            {
                var t = f.Tensor(name);
                if (t.Dims.Length != 2 || t.Rows != rows || t.Cols != cols)
                    throw new ModelFormatException(path, $"tensor '{name}' has ggml dims [{string.Join(',', t.Dims)}], expected [{cols},{rows}]");
                var m = MaybePack(GgufMatrix(f, t, rows, cols, format, permuteHeads), doPack);
                owned.Add(m);
                return m;
            }
            unsafe float[] Vector(string name, int length)
            {
                var t = f.Tensor(name);
                if (t.Dims.Length != 1 || t.Cols != length || t.Type == GgufType.Q8_0)
                    throw new ModelFormatException(path, $"tensor '{name}' has ggml dims [{string.Join(',', t.Dims)}] of {t.Type}, expected [{length}] of F32, F16 or BF16");
                var v = new float[length];
                GgufRow(t, f.Pointer(t), 0, length, v);
                return v;
            }
            Linear Lin(string prefix, int rows, int cols, bool bias, int permuteHeads) =>
                new(Matrix(prefix + ".weight", rows, cols, permuteHeads), bias ? Vector(prefix + ".bias", rows) : null);

            var c = config;
            var (emb, layers) = Assemble(c, GgufNames, Matrix, Vector, Lin);
            var norm = Vector(GgufNames.FinalNorm, c.HiddenSize);
            var head = c.TieWordEmbeddings ? emb : Matrix("output.weight", c.VocabSize, c.HiddenSize, 0);
            return new ModelWeights(c, emb, layers, norm, head, owned, f);
        }
        catch
        {
            foreach (var m in owned) m.Dispose();
            f.Dispose();
            throw;
        }
    }

    /// <summary>The stored row holding HF row r of a q/k projection of <paramref name="heads"/> heads (0: unpermuted).</summary>
    internal static int GgufSourceRow(int r, int rows, int heads)
    {
        if (heads == 0) return r;
        int hd = rows / heads, half = hd / 2;
        int h = r / hd, j = r % hd;
        return h * hd + 2 * (j % half) + j / half;
    }

    private static unsafe WeightMatrix GgufMatrix(GgufFile f, GgufTensor t, int rows, int cols, WeightFormat format, int heads)
    {
        bool q8Fits = Q8Layout.Fits(rows, cols);
        var target = format switch
        {
            WeightFormat.F32 => WeightType.F32,
            WeightFormat.BF16 => WeightType.BF16,
            WeightFormat.Q8 when q8Fits => WeightType.Q8,
            _ => t.Type == GgufType.BF16 ? WeightType.BF16 : t.Type == GgufType.Q8_0 && q8Fits ? WeightType.Q8 : WeightType.F32,
        };
        byte* src = f.Pointer(t);
        if (heads == 0 && t.Type == GgufType.F32 && target == WeightType.F32) return WeightMatrix.Borrow(WeightType.F32, rows, cols, src);
        if (heads == 0 && t.Type == GgufType.BF16 && target == WeightType.BF16) return WeightMatrix.Borrow(WeightType.BF16, rows, cols, src);
        if (heads > 0 && (rows % heads != 0 || rows / heads % 2 != 0))
            throw new ModelFormatException(f.Path, $"tensor '{t.Name}': {rows} rows do not split into {heads} heads of an even size");
        var m = WeightMatrix.Allocate(target, rows, cols);
        nint source = (nint)src, dst = (nint)m.Data;
        Parallel.For(0, rows, () => new float[cols], (r, _, row) =>
        {
            int s = GgufSourceRow(r, rows, heads);
            if (t.Type == GgufType.Q8_0 && target == WeightType.Q8)
            {
                // block for block: the int8 values as stored, the f16 scale widened exactly
                byte* blk = (byte*)source + (long)s * (cols / GgufFile.Q8Block) * GgufFile.Q8BlockBytes;
                for (int b = 0; b < cols / GgufFile.Q8Block; b++, blk += GgufFile.Q8BlockBytes)
                    Q8Layout.SetBlock((byte*)dst, cols, r, b, new ReadOnlySpan<sbyte>(blk + 2, GgufFile.Q8Block), (float)*(Half*)blk);
                return row;
            }
            GgufRow(t, (byte*)source, s, cols, row);
            if (target == WeightType.Q8) Q8Layout.SetRow((byte*)dst, cols, r, row);
            else if (target == WeightType.F32) row.CopyTo(new Span<float>((float*)dst + (long)r * cols, cols));
            else DTypeConvert.FloatToBFloat16(row, new Span<ushort>((ushort*)dst + (long)r * cols, cols));
            return row;
        }, _ => { });
        return m;
    }

    /// <summary>Stored row <paramref name="row"/> of a tensor (cols values) as f32.</summary>
    private static unsafe void GgufRow(GgufTensor t, byte* p, long row, int cols, Span<float> dst)
    {
        switch (t.Type)
        {
            case GgufType.F32:
                new ReadOnlySpan<float>((float*)p + row * cols, cols).CopyTo(dst);
                break;
            case GgufType.F16:
                for (int k = 0; k < cols; k++) dst[k] = (float)((Half*)p)[row * cols + k];
                break;
            case GgufType.BF16:
                DTypeConvert.BFloat16ToFloat(new ReadOnlySpan<ushort>((ushort*)p + row * cols, cols), dst);
                break;
            default:
                byte* blk = p + row * (cols / GgufFile.Q8Block) * GgufFile.Q8BlockBytes;
                for (int b = 0; b < cols / GgufFile.Q8Block; b++, blk += GgufFile.Q8BlockBytes)
                {
                    float d = (float)*(Half*)blk;
                    for (int j = 0; j < GgufFile.Q8Block; j++) dst[b * GgufFile.Q8Block + j] = ((sbyte*)blk)[2 + j] * d;
                }
                break;
        }
    }
}
