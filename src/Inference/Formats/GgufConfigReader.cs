using Loom.Inference.Model;

namespace Loom.Inference.Formats;

/// <summary>The <see cref="ModelConfig"/> of a llama-architecture GGUF file, from its metadata (llama.embedding_length,
/// .feed_forward_length, .block_count, .attention.head_count(_kv), .attention.key_length, .attention.layer_norm_rms_epsilon,
/// .rope.freq_base, .context_length, .vocab_size) and tensors (a missing output.weight means tied embeddings). The
/// tokenizer is not read from the GGUF: the model folder holds tokenizer.json beside the .gguf file.</summary>
public static class GgufConfigReader
{
    public static ModelConfig Read(GgufFile f)
    {
        string arch = f.String("general.architecture") ?? throw new ModelFormatException(f.Path, "general.architecture is missing");
        if (arch != "llama") throw new ModelFormatException(f.Path, $"architecture '{arch}' is not supported in GGUF (llama)");
        if (f.Contains("rope_freqs.weight") || f.String("llama.rope.scaling.type") is { } s && s != "none")
            throw new ModelFormatException(f.Path, "RoPE frequency scaling (rope_freqs.weight, llama.rope.scaling.type) is not supported in GGUF; load the safetensors folder instead");
        int Required(string key) => f.Integer(key) is { } v && v is > 0 and <= int.MaxValue
            ? (int)v : throw new ModelFormatException(f.Path, $"'{key}' is missing or not a positive integer");
        int hidden = Required("llama.embedding_length");
        int heads = Required("llama.attention.head_count");
        var embd = f.Tensor("token_embd.weight");
        int vocab = f.Integer("llama.vocab_size") is { } v and > 0 and <= int.MaxValue ? (int)v : (int)embd.Rows;
        var config = new ModelConfig
        {
            ModelType = "llama",
            HiddenSize = hidden,
            IntermediateSize = Required("llama.feed_forward_length"),
            NumLayers = Required("llama.block_count"),
            NumHeads = heads,
            NumKvHeads = f.Integer("llama.attention.head_count_kv") is { } kv ? (int)kv : heads,
            HeadDim = f.Integer("llama.attention.key_length") is { } hd ? (int)hd : hidden / heads,
            VocabSize = vocab,
            RmsNormEps = f.Number("llama.attention.layer_norm_rms_epsilon") ?? 1e-5,
            RopeTheta = f.Number("llama.rope.freq_base") ?? 10000,
            MaxPositionEmbeddings = f.Integer("llama.context_length") is { } ctx and > 0 and <= int.MaxValue ? (int)ctx : 2048,
            TieWordEmbeddings = !f.Contains("output.weight"),
            QkvBias = f.Contains("blk.0.attn_q.bias"),
            OutputBias = f.Contains("blk.0.attn_output.bias"),
            BosTokenId = f.Integer("tokenizer.ggml.bos_token_id") is { } bos ? (int)bos : null,
            EosTokenIds = f.Integer("tokenizer.ggml.eos_token_id") is { } eos ? [(int)eos] : [],
        };
        if (config.NumKvHeads < 1 || config.NumHeads % config.NumKvHeads != 0 || config.HeadDim < 2 || config.HeadDim % 2 != 0)
            throw new ModelFormatException(f.Path, $"{config.NumHeads} heads, {config.NumKvHeads} KV heads of {config.HeadDim} values is not a valid attention shape");
        return config;
    }
}
