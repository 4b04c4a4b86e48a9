using Loom.Inference.Formats;
using Loom.Inference.Kernels;

namespace Loom.Inference.Model;

/// <summary>How weight matrices are held in memory. Auto keeps F32 and BF16 as stored (F16 becomes F32). Q8 quantizes
/// every matrix (the projections, the embedding and the LM head) to int8 with a scale per 32 values (GGUF's Q8_0) at
/// load; a matrix whose rows are not a multiple of 16 keeps its stored type. Norms and biases stay f32.</summary>
public enum WeightFormat { Auto, F32, BF16, Q8 }

/// <summary>A projection: weight [out, in] and an optional bias [out].</summary>
public sealed record Linear(WeightMatrix Weight, float[]? Bias);

public sealed record LayerWeights(
    float[] AttnNorm,   // (dim)
    Linear Q,           // (heads*headDim, dim)
    Linear K,           // (kvHeads*headDim, dim)
    Linear V,           // (kvHeads*headDim, dim)
    Linear O,           // (dim, heads*headDim)
    float[] MlpNorm,    // (dim)
    Linear Gate,        // (hidden, dim)
    Linear Up,          // (hidden, dim)
    Linear Down);       // (dim, hidden)

/// <summary>All weights of a model. Matrices point into the memory-mapped checkpoint when their stored type
/// is the one in use, otherwise into converted copies this object owns.</summary>
public sealed partial class ModelWeights : IDisposable
{
    private readonly IDisposable? _checkpoint;
    private readonly List<WeightMatrix> _matrices = [];

    public ModelConfig Config { get; }
    public WeightMatrix Embedding { get; }        // (vocab, dim)
    public IReadOnlyList<LayerWeights> Layers { get; }
    public float[] FinalNorm { get; }             // (dim)
    public WeightMatrix LmHead { get; }           // (vocab, dim); the embedding when tied

    private ModelWeights(ModelConfig config, WeightMatrix embedding, IReadOnlyList<LayerWeights> layers, float[] finalNorm,
        WeightMatrix lmHead, IEnumerable<WeightMatrix> matrices, IDisposable? checkpoint)
    {
        Config = config;
        Embedding = embedding;
        Layers = layers;
        FinalNorm = finalNorm;
        LmHead = lmHead;
        _matrices.AddRange(matrices);
        _checkpoint = checkpoint;
    }

    /// <summary>Bytes of weight matrices read by one decode step (every matrix once; the embedding row is negligible unless it is also the head).</summary>
    public long DecodeBytesPerToken
    {
        get
        {
            long b = LmHead.ByteCount;
            foreach (var l in Layers)
                foreach (var m in new[] { l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down }) b += m.Weight.ByteCount;
            return b;
        }
    }

    /// <summary>Packing into 16-row panels (see <see cref="WeightMatrix.Packed"/>) is used where the CPU has AVX-512.</summary>
    public static bool PackingPays => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported;

    private static WeightMatrix MaybePack(WeightMatrix m, bool pack)
    {
        if (!pack || !m.CanPack) return m;
        var p = m.Pack();
        m.Dispose();
        return p;
    }

    internal static bool HasSafetensors(string directory) =>
        File.Exists(Path.Combine(directory, SafetensorsCheckpoint.SingleFileName)) || File.Exists(Path.Combine(directory, SafetensorsCheckpoint.IndexFileName));

    /// <param name="pack">Repack matrices into the panel layout the AVX-512 kernel reads (copies them out of the mapping).</param>
    /// <param name="modelDirectory">A Hugging Face folder (safetensors), or a folder with one .gguf file and no safetensors
    /// (see <see cref="LoadGguf"/>).</param>
    public static ModelWeights Load(string modelDirectory, ModelConfig config, WeightFormat format = WeightFormat.Auto, bool? pack = null)
    {
        if (!HasSafetensors(modelDirectory) && GgufFile.FindIn(modelDirectory) is { } gguf) return LoadGguf(gguf, config, format, pack);
        bool doPack = pack ?? PackingPays;
        var ckpt = SafetensorsCheckpoint.Open(modelDirectory);
        var owned = new List<WeightMatrix>();
        try
        {
            WeightMatrix Matrix(string name, int rows, int cols)
            {
                var f = ckpt.FileOf(name);
                var t = f.GetInfo(name);
                if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
                    throw new ModelFormatException(f.Path, $"tensor '{name}' has shape [{string.Join(',', t.Shape)}], expected [{rows},{cols}]");
                var m = MaybePack(LoadMatrix(f, t, rows, cols, format), doPack);
                owned.Add(m);
                return m;
            }
            float[] Vector(string name, int length)
            {
                var f = ckpt.FileOf(name);
                var t = f.GetInfo(name);
                if (t.Shape.Length != 1 || t.Shape[0] != length)
                    throw new ModelFormatException(f.Path, $"tensor '{name}' has shape [{string.Join(',', t.Shape)}], expected [{length}]");
                return f.ReadFloats(name);
            }
            Linear Lin(string prefix, int rows, int cols, bool bias, int permuteHeads) =>
                new(Matrix(prefix + ".weight", rows, cols), bias ? Vector(prefix + ".bias", rows) : null);

            var c = config;
            var (emb, layers) = Assemble(c, HfNames, (name, rows, cols, _) => Matrix(name, rows, cols), Vector, Lin);
            var norm = Vector(HfNames.FinalNorm, c.HiddenSize);
            WeightMatrix head;
            if (ckpt.Contains("lm_head.weight") && !c.TieWordEmbeddings) head = Matrix("lm_head.weight", c.VocabSize, c.HiddenSize);
            else if (c.TieWordEmbeddings) head = emb;
            else throw new ModelFormatException(Path.Combine(modelDirectory, "config.json"),
                "tie_word_embeddings is false but the checkpoint has no 'lm_head.weight'");
            return new ModelWeights(c, emb, layers, norm, head, owned, ckpt);
        }
        catch
        {
            foreach (var m in owned) m.Dispose();
            ckpt.Dispose();
            throw;
        }
    }

    /// <summary>The tensor names of one checkpoint format; <see cref="Layer"/> is the prefix of layer {0}'s tensors.</summary>
    private sealed record TensorNames(string Embedding, string Layer, string AttnNorm, string Q, string K, string V, string O,
        string MlpNorm, string Gate, string Up, string Down, string FinalNorm);

    private static readonly TensorNames HfNames = new("model.embed_tokens.weight", "model.layers.{0}.", "input_layernorm.weight",
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm.weight",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "model.norm.weight");

    private static readonly TensorNames GgufNames = new("token_embd.weight", "blk.{0}.", "attn_norm.weight",
        "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm.weight", "ffn_gate", "ffn_up", "ffn_down", "output_norm.weight");

    /// <summary>The embedding and the layers of a llama-family model, read through a format's names. <paramref name="lin"/>
    /// takes a projection's prefix, its shape, whether it has a bias, and its head count when its rows are per-head
    /// (q and k; 0 otherwise: a format that stores q and k permuted undoes it with that count).</summary>
    private static (WeightMatrix Embedding, LayerWeights[] Layers) Assemble(ModelConfig c, TensorNames n,
        Func<string, int, int, int, WeightMatrix> matrix, Func<string, int, float[]> vector, Func<string, int, int, bool, int, Linear> lin)
    {
        var emb = matrix(n.Embedding, c.VocabSize, c.HiddenSize, 0);
        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = string.Format(System.Globalization.CultureInfo.InvariantCulture, n.Layer, i);
            layers[i] = new LayerWeights(
                vector(p + n.AttnNorm, c.HiddenSize),
                lin(p + n.Q, c.QDim, c.HiddenSize, c.QkvBias, c.NumHeads),
                lin(p + n.K, c.KvDim, c.HiddenSize, c.QkvBias, c.NumKvHeads),
                lin(p + n.V, c.KvDim, c.HiddenSize, c.QkvBias, 0),
                lin(p + n.O, c.HiddenSize, c.QDim, c.OutputBias, 0),
                vector(p + n.MlpNorm, c.HiddenSize),
                lin(p + n.Gate, c.IntermediateSize, c.HiddenSize, false, 0),
                lin(p + n.Up, c.IntermediateSize, c.HiddenSize, false, 0),
                lin(p + n.Down, c.HiddenSize, c.IntermediateSize, false, 0));
        }
        return (emb, layers);
    }

    private static unsafe WeightMatrix LoadMatrix(SafetensorsFile f, TensorInfo t, int rows, int cols, WeightFormat format)
    {
        var target = format switch
        {
            WeightFormat.F32 => WeightType.F32,
            WeightFormat.BF16 => WeightType.BF16,
            WeightFormat.Q8 when Q8Layout.Fits(rows, cols) => WeightType.Q8,
            _ => t.DType == TensorDType.BF16 ? WeightType.BF16 : WeightType.F32,
        };
        if (t.DType is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16))
            throw new ModelFormatException(f.Path, $"tensor '{t.Name}': dtype {TensorDTypes.ToName(t.DType)} is not a supported weight type (F32, F16, BF16)");
        byte* src = f.GetPointer(t);
        if (t.DType == TensorDType.F32 && target == WeightType.F32) return WeightMatrix.Borrow(WeightType.F32, rows, cols, src);
        if (t.DType == TensorDType.BF16 && target == WeightType.BF16) return WeightMatrix.Borrow(WeightType.BF16, rows, cols, src);
        if (target == WeightType.Q8) return Quantize(f.Path, t, src, rows, cols);
        var m = WeightMatrix.Allocate(target, rows, cols);
        var row = new float[cols];
        long rowBytes = (long)cols * TensorDTypes.SizeOf(t.DType);
        var rowInfo = t with { ByteLength = rowBytes };
        for (int r = 0; r < rows; r++)
        {
            DTypeConvert.ToFloat(f.Path, rowInfo, new ReadOnlySpan<byte>(src + r * rowBytes, (int)rowBytes), row);
            if (target == WeightType.F32) row.CopyTo(new Span<float>((float*)m.Data + (long)r * cols, cols));
            else DTypeConvert.FloatToBFloat16(row, new Span<ushort>((ushort*)m.Data + (long)r * cols, cols));
        }
        return m;
    }

    /// <summary>A Q8 copy of a stored tensor, quantized row by row in parallel.</summary>
    private static unsafe WeightMatrix Quantize(string path, TensorInfo t, byte* src, int rows, int cols)
    {
        var m = WeightMatrix.Allocate(WeightType.Q8, rows, cols);
        long rowBytes = (long)cols * TensorDTypes.SizeOf(t.DType);
        var rowInfo = t with { ByteLength = rowBytes };
        nint source = (nint)src;
        Parallel.For(0, rows, () => new float[cols], (r, _, row) =>
        {
            DTypeConvert.ToFloat(path, rowInfo, new ReadOnlySpan<byte>((byte*)source + r * rowBytes, (int)rowBytes), row);
            m.SetRowQ8(r, row);
            return row;
        }, _ => { });
        return m;
    }

    /// <summary>Random weights of the given shape (benchmarks, tests): N(0, 1/in) projections, N(0,1) embeddings, norms near 1.</summary>
    public static ModelWeights CreateRandom(ModelConfig c, WeightType type, ulong seed, bool? pack = null)
    {
        bool doPack = pack ?? PackingPays;
        var owned = new List<WeightMatrix>();
        ulong s = seed;
        WeightMatrix Matrix(int rows, int cols, float std)
        {
            var m = MaybePack(RandomMatrix(type, rows, cols, std, s++), doPack);
            owned.Add(m);
            return m;
        }
        float[] Ones(int n, float jitter)
        {
            var rng = new Random((int)(s++ & 0x7fffffff));
            var v = new float[n];
            for (int i = 0; i < n; i++) v[i] = 1 + jitter * (float)(rng.NextDouble() * 2 - 1);
            return v;
        }
        float[]? Bias(int n) => c.QkvBias ? Ones(n, 0.5f).Select(x => x - 1).ToArray() : null;
        float si = 1f / MathF.Sqrt(c.HiddenSize);
        var emb = Matrix(c.VocabSize, c.HiddenSize, 1f);
        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++)
            layers[i] = new LayerWeights(Ones(c.HiddenSize, 0.1f),
                new Linear(Matrix(c.QDim, c.HiddenSize, 1.5f * si), Bias(c.QDim)),
                new Linear(Matrix(c.KvDim, c.HiddenSize, 1.5f * si), Bias(c.KvDim)),
                new Linear(Matrix(c.KvDim, c.HiddenSize, si), Bias(c.KvDim)),
                new Linear(Matrix(c.HiddenSize, c.QDim, 1f / MathF.Sqrt(c.QDim)), null),
                Ones(c.HiddenSize, 0.1f),
                new Linear(Matrix(c.IntermediateSize, c.HiddenSize, si), null),
                new Linear(Matrix(c.IntermediateSize, c.HiddenSize, si), null),
                new Linear(Matrix(c.HiddenSize, c.IntermediateSize, 1f / MathF.Sqrt(c.IntermediateSize)), null));
        var head = c.TieWordEmbeddings ? emb : Matrix(c.VocabSize, c.HiddenSize, si);
        return new ModelWeights(c, emb, layers, Ones(c.HiddenSize, 0.1f), head, owned, null);
    }

    /// <summary>A copy with every matrix converted to <paramref name="type"/> (e.g. F32 → BF16 rounding).</summary>
    public ModelWeights ConvertTo(WeightType type)
    {
        var owned = new List<WeightMatrix>();
        var map = new Dictionary<WeightMatrix, WeightMatrix>(ReferenceEqualityComparer.Instance);
        WeightMatrix Conv(WeightMatrix m)
        {
            if (map.TryGetValue(m, out var done)) return done;
            var r = type == WeightType.Q8 && !Q8Layout.Fits(m.Rows, m.Cols) ? m.ConvertTo(m.Type) : m.ConvertTo(type);
            owned.Add(r);
            map[m] = r;
            return r;
        }
        Linear L(Linear l) => new(Conv(l.Weight), l.Bias);
        var layers = Layers.Select(l => l with { Q = L(l.Q), K = L(l.K), V = L(l.V), O = L(l.O), Gate = L(l.Gate), Up = L(l.Up), Down = L(l.Down) }).ToArray();
        return new ModelWeights(Config, Conv(Embedding), layers, FinalNorm, Conv(LmHead), owned, null);
    }

    private static unsafe WeightMatrix RandomMatrix(WeightType type, int rows, int cols, float std, ulong seed)
    {
        if (type == WeightType.Q8)
        {
            // the bf16 matrix of the same seed, quantized: q8 and bf16 benchmarks run the same model
            using var bf = RandomMatrix(WeightType.BF16, rows, cols, std, seed);
            return Q8Layout.Fits(rows, cols) ? bf.ConvertTo(WeightType.Q8) : bf.ConvertTo(WeightType.BF16);
        }
        var m = WeightMatrix.Allocate(type, rows, cols);
        nint data = (nint)m.Data;
        // uniform with the requested standard deviation: fast to generate for a billion weights
        float a = std * MathF.Sqrt(3f);
        Parallel.For(0, rows, r =>
        {
            ulong x = (seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)r * 0xD1B54A32D192ED03UL) ^ 0x2545F4914F6CDD1DUL;
            for (int k = 0; k < cols; k++)
            {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                float u = (float)((x >> 40) * (1.0 / (1UL << 24))) * 2f - 1f;
                if (type == WeightType.F32) ((float*)data)[(long)r * cols + k] = u * a;
                else ((ushort*)data)[(long)r * cols + k] = DTypeConvert.FloatToBFloat16(u * a);
            }
        });
        return m;
    }

    public void Dispose()
    {
        foreach (var m in _matrices) m.Dispose();
        _matrices.Clear();
        _checkpoint?.Dispose();
    }
}
