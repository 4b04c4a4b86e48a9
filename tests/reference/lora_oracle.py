#!/usr/bin/python3
"""Oracle for Loom's LoRA path.

For two of the golden models in tests/golden/models/ this writes a PEFT adapter folder exactly as
Hugging Face PEFT saves one (adapter_config.json + adapter_model.safetensors with PEFT's tensor
names), plus golden tensors computed in float64 from the stored (possibly bf16-rounded) weights:

  delta.<layer>.<module>.x / .y : y = scale * (x A^T) B^T for random inputs x (the LoRA delta alone)
  prefill.<i>                   : all-position logits of the base model with the adapter applied,
                                  y = x W^T (+ b) + scale * (x A^T) B^T at every target module

scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora. B is random (PEFT initialises it
to zero, which would make every check pass trivially).

Run with Debian's torch:  /usr/bin/python3 tests/reference/lora_oracle.py
Output is deterministic (fixed seeds); the tests only read the committed files.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import apply_rope, rms_norm, rope_inv_freq, write_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "golden", "models")
OUT = os.path.join(HERE, "..", "golden", "lora")

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[b:end])
        if e["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif e["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            raise ValueError(e["dtype"])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def module_dims(cfg, m):
    D, I = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    return {"q_proj": (D, q), "k_proj": (D, kv), "v_proj": (D, kv), "o_proj": (q, D),
            "gate_proj": (D, I), "up_proj": (D, I), "down_proj": (I, D)}[m]


def peft_name(layer, module, ab):
    group = "self_attn" if module in ATTN else "mlp"
    return f"base_model.model.model.layers.{layer}.{group}.{module}.lora_{ab}.weight"


def forward(cfg, W, tokens, lora, scale):
    """All-position logits (T, vocab) with LoRA deltas at the target modules, float64."""
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    T = len(tokens)
    pos = torch.arange(T)
    inv_freq = rope_inv_freq(cfg)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."

        def proj(h, group, name):
            y = h @ W[p + f"{group}.{name}.weight"].T
            b = W.get(p + f"{group}.{name}.bias")
            if b is not None:
                y = y + b
            ab = lora.get((l, name))
            if ab is not None:
                A, B = ab
                y = y + scale * ((h @ A.T) @ B.T)
            return y
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = proj(h, "self_attn", "q_proj").view(T, H, hd).transpose(0, 1)
        k = proj(h, "self_attn", "k_proj").view(T, KV, hd).transpose(0, 1)
        v = proj(h, "self_attn", "v_proj").view(T, KV, hd).transpose(0, 1)
        q, k = apply_rope(q, pos, inv_freq), apply_rope(k, pos, inv_freq)
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1)
        x = x + proj((att @ v).transpose(0, 1).reshape(T, H * hd), "self_attn", "o_proj")
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = proj(h, "mlp", "gate_proj")
        u = proj(h, "mlp", "up_proj")
        x = x + proj(torch.nn.functional.silu(g) * u, "mlp", "down_proj")
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T


ADAPTERS = [
    # rank 8, attention q/v/o and down_proj (in = intermediate 160 > hidden 64), f32, alpha/r scaling
    dict(name="llama_gqa_tied_r8", model="llama_gqa_tied", r=8, alpha=16, rslora=False, dtype=torch.float32,
         targets=["q_proj", "v_proj", "o_proj", "down_proj"], deltas=[(1, "down_proj"), (0, "q_proj")]),
    # rank 4, rsLoRA, q width 128 != hidden 64, bf16 weights like the base model
    dict(name="llama3_scaled_bf16_r4", model="llama3_scaled_bf16", r=4, alpha=8, rslora=True, dtype=torch.bfloat16,
         targets=["q_proj", "k_proj", "gate_proj", "up_proj", "down_proj"], deltas=[(0, "q_proj"), (1, "up_proj")]),
]


def main():
    for ai, a in enumerate(ADAPTERS):
        mdir = os.path.join(MODELS, a["model"])
        with open(os.path.join(mdir, "config.json")) as f:
            cfg = json.load(f)
        cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        W = {k: v.double() for k, v in read_safetensors(os.path.join(mdir, "model.safetensors")).items()}
        gen = torch.Generator().manual_seed(3000 + ai)
        r = a["r"]
        tensors, lora = {}, {}
        for l in range(cfg["num_hidden_layers"]):
            for m in a["targets"]:
                fin, fout = module_dims(cfg, m)
                A = (torch.randn(r, fin, generator=gen, dtype=torch.float64) / math.sqrt(fin)).float().to(a["dtype"])
                B = (torch.randn(fout, r, generator=gen, dtype=torch.float64) * 0.5 / math.sqrt(r)).float().to(a["dtype"])
                tensors[peft_name(l, m, "A")] = A
                tensors[peft_name(l, m, "B")] = B
                lora[(l, m)] = (A.double(), B.double())
        scale = a["alpha"] / (math.sqrt(r) if a["rslora"] else r)

        out = os.path.join(OUT, a["name"])
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        config = {
            "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": f"loom-golden/{a['model']}",
            "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
            "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": a["alpha"],
            "lora_dropout": 0.0, "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
            "peft_type": "LORA", "r": r, "rank_pattern": {}, "revision": None, "target_modules": a["targets"],
            "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": a["rslora"],
        }
        with open(os.path.join(out, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)

        golden = {}
        g = torch.Generator().manual_seed(4000 + ai)
        for (l, m) in a["deltas"]:
            fin, _ = module_dims(cfg, m)
            x = torch.randn(5, fin, generator=g, dtype=torch.float64).float()
            A, B = lora[(l, m)]
            golden[f"delta.{l}.{m}.x"] = x
            golden[f"delta.{l}.{m}.y"] = (scale * ((x.double() @ A.T) @ B.T)).float()
        with open(os.path.join(mdir, "golden.json")) as f:
            prompts = json.load(f)["prompts"]
        for i, p in enumerate(prompts):
            golden[f"prefill.{i}"] = forward(cfg, W, p, lora, scale).float()
        write_safetensors(os.path.join(out, "golden.safetensors"), golden)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump({"model": a["model"], "prompts": prompts, "scale": scale,
                       "deltas": [[l, m] for (l, m) in a["deltas"]],
                       "note": "float64 by tests/reference/lora_oracle.py; prefill.i = logits with the adapter applied"},
                      f, indent=1)
        print(a["name"], "written:", sorted(os.listdir(out)))


if __name__ == "__main__":
    sys.exit(main())
