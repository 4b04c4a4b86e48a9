using System.Text;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Formats;

/// <summary>Writes a Hugging Face golden model as a GGUF file the way llama.cpp's convert_hf_to_gguf does for llama:
/// its tensor names, q_proj/k_proj rows permuted per head for the interleaved RoPE, matrices as F32, F16 or Q8_0
/// (scale = max|x|/127 stored as f16, values round(x/scale)), norms as F32, and the llama.* metadata.</summary>
internal static class GgufTestWriter
{
    public static void Write(string path, string hfDirectory, GgufType matrices, Action<List<(string Key, uint Type, byte[] Value)>>? editMetadata = null)
    {
        var c = ModelConfig.Load(hfDirectory);
        using var ckpt = SafetensorsCheckpoint.Open(hfDirectory);
        float[] Read(string name) => ckpt.FileOf(name).ReadFloats(name);
        var tensors = new List<(string Name, long[] Dims, GgufType Type, byte[] Data)>();
        void Matrix(string name, string hf, int rows, int cols, int permuteHeads = 0)
        {
            var v = Read(hf);
            if (permuteHeads > 0) v = Permute(v, rows, cols, permuteHeads);
            tensors.Add((name, [cols, rows], matrices, Encode(v, matrices)));
        }
        void Vector(string name, string hf) { var v = Read(hf); tensors.Add((name, [v.Length], GgufType.F32, Encode(v, GgufType.F32))); }
        Matrix("token_embd.weight", "model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"blk.{i}.", h = $"model.layers.{i}.";
            Vector(p + "attn_norm.weight", h + "input_layernorm.weight");
            Matrix(p + "attn_q.weight", h + "self_attn.q_proj.weight", c.QDim, c.HiddenSize, c.NumHeads);
            Matrix(p + "attn_k.weight", h + "self_attn.k_proj.weight", c.KvDim, c.HiddenSize, c.NumKvHeads);
            Matrix(p + "attn_v.weight", h + "self_attn.v_proj.weight", c.KvDim, c.HiddenSize);
            Matrix(p + "attn_output.weight", h + "self_attn.o_proj.weight", c.HiddenSize, c.QDim);
            Vector(p + "ffn_norm.weight", h + "post_attention_layernorm.weight");
            Matrix(p + "ffn_gate.weight", h + "mlp.gate_proj.weight", c.IntermediateSize, c.HiddenSize);
            Matrix(p + "ffn_up.weight", h + "mlp.up_proj.weight", c.IntermediateSize, c.HiddenSize);
            Matrix(p + "ffn_down.weight", h + "mlp.down_proj.weight", c.HiddenSize, c.IntermediateSize);
        }
        Vector("output_norm.weight", "model.norm.weight");
        if (!c.TieWordEmbeddings) Matrix("output.weight", "lm_head.weight", c.VocabSize, c.HiddenSize);

        var kv = new List<(string Key, uint Type, byte[] Value)>
        {
            ("general.architecture", 8, Str("llama")),
            ("general.alignment", 4, BitConverter.GetBytes(32u)),
            ("llama.context_length", 4, BitConverter.GetBytes((uint)c.MaxPositionEmbeddings)),
            ("llama.embedding_length", 4, BitConverter.GetBytes((uint)c.HiddenSize)),
            ("llama.block_count", 4, BitConverter.GetBytes((uint)c.NumLayers)),
            ("llama.feed_forward_length", 4, BitConverter.GetBytes((uint)c.IntermediateSize)),
            ("llama.attention.head_count", 4, BitConverter.GetBytes((uint)c.NumHeads)),
            ("llama.attention.head_count_kv", 4, BitConverter.GetBytes((uint)c.NumKvHeads)),
            ("llama.attention.key_length", 4, BitConverter.GetBytes((uint)c.HeadDim)),
            ("llama.attention.layer_norm_rms_epsilon", 6, BitConverter.GetBytes((float)c.RmsNormEps)),
            ("llama.rope.freq_base", 6, BitConverter.GetBytes((float)c.RopeTheta)),
            ("llama.vocab_size", 4, BitConverter.GetBytes((uint)c.VocabSize)),
            // an array the reader steps over (the tokenizer comes from tokenizer.json)
            ("tokenizer.ggml.tokens", 9, [.. BitConverter.GetBytes(8u), .. BitConverter.GetBytes(2UL), .. Str("a"), .. Str("b")]),
            ("tokenizer.ggml.eos_token_id", 4, BitConverter.GetBytes(318u)),
        };
        editMetadata?.Invoke(kv);

        using var w = new BinaryWriter(File.Create(path));
        w.Write(0x46554747u);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)kv.Count);
        foreach (var (key, type, value) in kv) { w.Write(Str(key)); w.Write(type); w.Write(value); }
        long offset = 0;
        var offsets = new List<long>();
        foreach (var t in tensors)
        {
            w.Write(Str(t.Name));
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset = (offset + t.Data.Length + 31) / 32 * 32;
        }
        Pad(w);
        long dataStart = w.BaseStream.Position;
        for (int i = 0; i < tensors.Count; i++)
        {
            w.BaseStream.Position = dataStart + offsets[i];
            w.Write(tensors[i].Data);
        }
        Pad(w);
    }

    /// <summary>convert_hf_to_gguf's permute: rows (heads, 2, hd/2) become (heads, hd/2, 2).</summary>
    public static float[] Permute(float[] w, int rows, int cols, int heads)
    {
        int hd = rows / heads, half = hd / 2;
        var o = new float[w.Length];
        for (int h = 0; h < heads; h++)
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < half; i++)
                    Array.Copy(w, (long)(h * hd + s * half + i) * cols, o, (long)(h * hd + 2 * i + s) * cols, cols);
        return o;
    }

    private static byte[] Encode(float[] v, GgufType type)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        if (type == GgufType.F32) foreach (float x in v) w.Write(x);
        else if (type == GgufType.F16) foreach (float x in v) w.Write((Half)x);
        else
            for (int b = 0; b < v.Length; b += 32)
            {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(v[b + j]));
                float d = amax / 127, id = d != 0 ? 1 / d : 0;
                w.Write((Half)d);
                for (int j = 0; j < 32; j++) w.Write((sbyte)MathF.Round(v[b + j] * id, MidpointRounding.AwayFromZero));
            }
        return ms.ToArray();
    }

    private static byte[] Str(string s) => [.. BitConverter.GetBytes((ulong)Encoding.UTF8.GetByteCount(s)), .. Encoding.UTF8.GetBytes(s)];

    private static void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % 32 != 0) w.Write((byte)0);
    }
}
