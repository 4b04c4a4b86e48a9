#!/usr/bin/python3
"""Oracle for Loom's inference engine.

Builds small random Llama-family models, writes them in Hugging Face format (config.json,
safetensors, tokenizer.json) under tests/golden/models/<name>/, and writes golden logits computed
by an independent float64 PyTorch implementation of the HF Llama / Qwen2 equations.

Run with Debian's torch:  /usr/bin/python3 tests/reference/make_golden.py
Output is deterministic (fixed seeds); CI only reads the committed files.
"""
import json
import math
import os
import struct
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "models")

VOCAB = 320          # 256 bytes + 61 merges + 3 special tokens
BOS, EOS, EOT = 317, 318, 319


# ---------------------------------------------------------------- safetensors (by hand)
DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        # reinterpret the 16-bit patterns; torch 1.13 has no direct bfloat16 -> numpy
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- a tiny byte-level BPE tokenizer.json
def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def make_tokenizer():
    text = ("the quick brown fox jumps over the lazy dog. a model that learns to read and write the "
            "text of the world, one token at a time, in the order it was written. there is the thing "
            "and then there is another thing; on and on it goes, in and out, to and fro. ") * 4
    b2u = bytes_to_unicode()
    words = []
    for i, w in enumerate(text.split(" ")):
        if not w:
            continue
        s = ("Ġ" if i > 0 else "") + "".join(b2u[b] for b in w.encode("utf-8"))
        words.append(list(s))
    vocab = {b2u[b]: b for b in range(256)}
    merges = []
    while len(vocab) < BOS:
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i:i + 2] = [a + b]
                i += 1
    specials = [(BOS, "<|begin_of_text|>"), (EOS, "<|end_of_text|>"), (EOT, "<|eot_id|>")]
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in specials]
    for i, c in specials:
        vocab[c] = i
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [BOS], "tokens": ["<|begin_of_text|>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


# ---------------------------------------------------------------- the reference forward pass (float64)
def rope_inv_freq(cfg):
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        out = []
        for f, w in zip(inv.tolist(), wavelen.tolist()):
            if w < old / hi:            # high frequency: unchanged
                out.append(f)
            elif w > old / lo:          # low frequency: divided by factor
                out.append(f / factor)
            else:                       # in between: interpolate
                smooth = (old / w - lo) / (hi - lo)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = torch.tensor(out, dtype=torch.float64)
    return inv


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def apply_rope(x, pos, inv_freq):
    # x: (heads, T, hd), rotate-half convention: pairs (i, i + hd/2)
    ang = pos[:, None].double() * inv_freq[None, :]           # (T, hd/2)
    cos, sin = torch.cos(ang), torch.sin(ang)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def forward(cfg, W, tokens):
    """All-position logits (T, vocab) for one sequence, from scratch (no cache)."""
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    T = len(tokens)
    pos = torch.arange(T)
    inv_freq = rope_inv_freq(cfg)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ W[p + f"self_attn.{name}.weight"].T
            b = W.get(p + f"self_attn.{name}.bias")
            return y + b if b is not None else y
        q = proj("q_proj").view(T, H, hd).transpose(0, 1)
        k = proj("k_proj").view(T, KV, hd).transpose(0, 1)
        v = proj("v_proj").view(T, KV, hd).transpose(0, 1)
        q, k = apply_rope(q, pos, inv_freq), apply_rope(k, pos, inv_freq)
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * hd) @ W[p + "self_attn.o_proj.weight"].T
        x = x + o
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T


# ---------------------------------------------------------------- model definitions
def make_weights(cfg, gen, dtype):
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).float().to(dtype)

    W = {"model.embed_tokens.weight": rnd(V, D, std=1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = (1 + rnd(D, std=0.1).float()).to(dtype)
        W[p + "self_attn.q_proj.weight"] = rnd(H * hd, D, std=1.5 / math.sqrt(D))
        W[p + "self_attn.k_proj.weight"] = rnd(KV * hd, D, std=1.5 / math.sqrt(D))
        W[p + "self_attn.v_proj.weight"] = rnd(KV * hd, D, std=1.0 / math.sqrt(D))
        if cfg["model_type"] == "qwen2":
            W[p + "self_attn.q_proj.bias"] = rnd(H * hd, std=0.5)
            W[p + "self_attn.k_proj.bias"] = rnd(KV * hd, std=0.5)
            W[p + "self_attn.v_proj.bias"] = rnd(KV * hd, std=0.5)
        W[p + "self_attn.o_proj.weight"] = rnd(D, H * hd, std=1.0 / math.sqrt(H * hd))
        W[p + "post_attention_layernorm.weight"] = (1 + rnd(D, std=0.1).float()).to(dtype)
        W[p + "mlp.gate_proj.weight"] = rnd(I, D, std=1.0 / math.sqrt(D))
        W[p + "mlp.up_proj.weight"] = rnd(I, D, std=1.0 / math.sqrt(D))
        W[p + "mlp.down_proj.weight"] = rnd(D, I, std=1.0 / math.sqrt(I))
    W["model.norm.weight"] = (1 + rnd(D, std=0.1).float()).to(dtype)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = rnd(V, D, std=1.0 / math.sqrt(D))
    return W


MODELS = [
    # llama, grouped-query attention (4 heads over 2 KV heads), tied embeddings, f32 weights
    dict(name="llama_gqa_tied", dtype=torch.float32, shards=1, cfg=dict(
        model_type="llama", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
        rope_scaling=None, tie_word_embeddings=True, max_position_embeddings=256)),
    # llama 3 style: rope_scaling llama3, head_dim 32 (q width 128 != hidden 64), 1 KV head, bf16 weights
    dict(name="llama3_scaled_bf16", dtype=torch.bfloat16, shards=1, generation_eos=[EOS, EOT], cfg=dict(
        model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=64),
        tie_word_embeddings=False, max_position_embeddings=256)),
    # qwen2 with q/k/v bias, untied, large rope theta, sharded into two files with an index
    dict(name="qwen2_bias", dtype=torch.float32, shards=2, cfg=dict(
        model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=False, max_position_embeddings=256, use_sliding_window=False)),
    # mistral with head_dim 64 (the width of the specialised attention kernels), one KV head
    dict(name="mistral_hd64", dtype=torch.float32, shards=1, cfg=dict(
        model_type="mistral", hidden_size=128, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, max_position_embeddings=256, sliding_window=None)),
]


def main():
    torch.manual_seed(0)
    tok = make_tokenizer()
    for mi, m in enumerate(MODELS):
        cfg = dict(m["cfg"])
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}[cfg["model_type"]]
        cfg.update(architectures=[arch],
                   hidden_act="silu", vocab_size=VOCAB, bos_token_id=BOS, eos_token_id=EOS,
                   torch_dtype="bfloat16" if m["dtype"] == torch.bfloat16 else "float32")
        # head_dim is implicit (hidden / heads) for qwen2
        cfg_eval = dict(cfg)
        cfg_eval.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        gen = torch.Generator().manual_seed(1000 + mi)
        W = make_weights(cfg_eval, gen, m["dtype"])

        out = os.path.join(ROOT, m["name"])
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        if "generation_eos" in m:
            with open(os.path.join(out, "generation_config.json"), "w") as f:
                json.dump({"bos_token_id": BOS, "eos_token_id": m["generation_eos"]}, f, indent=2)
        with open(os.path.join(out, "tokenizer.json"), "w") as f:
            json.dump(tok, f, ensure_ascii=False)
        names = list(W.keys())
        if m["shards"] == 1:
            write_safetensors(os.path.join(out, "model.safetensors"), W)
        else:
            per = (len(names) + m["shards"] - 1) // m["shards"]
            weight_map = {}
            for s in range(m["shards"]):
                fn = f"model-{s + 1:05d}-of-{m['shards']:05d}.safetensors"
                part = {n: W[n] for n in names[s * per:(s + 1) * per]}
                write_safetensors(os.path.join(out, fn), part)
                weight_map.update({n: fn for n in part})
            with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": sum(len(tensor_bytes(t)) for t in W.values())},
                           "weight_map": weight_map}, f, indent=2)

        # golden logits in float64 from the stored (possibly bf16-rounded) weights
        W64 = {k: v.double() for k, v in W.items()}
        g = torch.Generator().manual_seed(2000 + mi)
        prompts = [[BOS] + torch.randint(0, 256, (8,), generator=g).tolist(),
                   [BOS] + torch.randint(0, 256, (4,), generator=g).tolist(),
                   [BOS] + torch.randint(0, 317, (12,), generator=g).tolist()]
        golden = {}
        for i, p in enumerate(prompts):
            golden[f"prefill.{i}"] = forward(cfg_eval, W64, p).float()
        # step-by-step greedy decode of prompt 0, each step recomputed from scratch
        seq = list(prompts[0])
        decode_tokens, steps = [], []
        for _ in range(5):
            logits = forward(cfg_eval, W64, seq)[-1]
            nxt = int(torch.argmax(logits))
            steps.append(logits.float())
            decode_tokens.append(nxt)
            seq.append(nxt)
        golden["decode.0"] = torch.stack(steps)
        write_safetensors(os.path.join(out, "golden.safetensors"), golden)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump({"prompts": prompts, "decode_prompt": 0, "decode_tokens": decode_tokens,
                       "weights_dtype": DTYPES[m["dtype"]],
                       "note": "logits computed in float64 by tests/reference/make_golden.py"}, f, indent=1)
        print(m["name"], "written:", sorted(os.listdir(out)))


if __name__ == "__main__":
    sys.exit(main())
