#!/usr/bin/python3
"""Oracle for Loom's embeddings: mean over the positions of the final hidden state (after the final RMSNorm, the
last_hidden_state of Hugging Face's LlamaModel), L2-normalized, for the golden llama3_scaled_bf16 model with and
without its golden rank-4 adapter. float64, from the independent forward pass of lora_oracle.py.

Run with Debian's torch:  /usr/bin/python3 tests/reference/embedding_oracle.py
Writes tests/golden/embeddings/llama3_scaled_bf16.json; CI only reads it.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lora_oracle import ADAPTERS, MODELS, OUT, forward, peft_name, read_safetensors  # noqa: E402

MODEL = "llama3_scaled_bf16"
INPUTS = [[5, 17, 200, 33, 9], [300], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]]


def embed(cfg, W, tokens, lora, scale):
    # with the LM head set to the identity, the "logits" are the final hidden states (T, hidden)
    h = forward(cfg, W, tokens, lora, scale)
    v = h.mean(0)
    return (v / v.norm()).tolist()


def main():
    mdir = os.path.join(MODELS, MODEL)
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    W = {k: v.double() for k, v in read_safetensors(os.path.join(mdir, "model.safetensors")).items()}
    W["lm_head.weight"] = torch.eye(cfg["hidden_size"], dtype=torch.float64)
    a = next(a for a in ADAPTERS if a["model"] == MODEL)
    T = {k: v.double() for k, v in read_safetensors(os.path.join(OUT, a["name"], "adapter_model.safetensors")).items()}
    lora = {(l, m): (T[peft_name(l, m, "A")], T[peft_name(l, m, "B")]) for l in range(cfg["num_hidden_layers"]) for m in a["targets"]}
    scale = a["alpha"] / (math.sqrt(a["r"]) if a["rslora"] else a["r"])
    out = {
        "model": MODEL, "adapter": a["name"], "inputs": INPUTS,
        "base": [embed(cfg, W, t, {}, 0.0) for t in INPUTS],
        "with_adapter": [embed(cfg, W, t, lora, scale) for t in INPUTS],
        "note": "float64 by tests/reference/embedding_oracle.py: mean over positions of the final-normed hidden state, L2-normalized",
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "embeddings", MODEL + ".json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("written", path)


if __name__ == "__main__":
    main()
