#!/usr/bin/python3
"""Oracle for Loom's LoRA trainer (src/Inference/Training).

For golden models of tests/golden/models/ this writes, under tests/golden/training/<case>/:
  adapter_config.json, adapter_model.safetensors : the starting LoRA weights (PEFT naming; B random, not zero,
                                                   so that every gradient is non-trivial)
  golden.json                                    : examples (token ids + loss masks), hyperparameters, loss
  golden.safetensors                             : float64-computed, stored as f32:
      grad.<PEFT tensor name>     gradient of the loss of the first optimizer step w.r.t. that LoRA tensor
      step<k>.<PEFT tensor name>  the tensor after k AdamW steps (cases with "steps")
      logits.<i>                  all-position logits of example i with the adapter after the last step

The loss of a step is the cross-entropy summed over the trained tokens of all its examples (a token i is
trained when mask[i] is true: its prediction from tokens 0..i-1), divided by their number.

Optimizer (the trainer's documented rules): lr(s) = lr * (s+1)/warmup for s < warmup, then linear decay
lr * (total - s)/(total - warmup) (cosine: lr * 0.5 * (1 + cos(pi * (s - warmup)/(total - warmup)))); gradients
clipped by global norm (coefficient max_norm / (norm + 1e-6) when below 1, as torch.nn.utils.clip_grad_norm_);
torch.optim.AdamW (decoupled weight decay, bias-corrected moments).

Run with Debian's torch:  /usr/bin/python3 tests/reference/training_oracle.py
Output is deterministic (fixed seeds); the tests only read the committed files.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import write_safetensors  # noqa: E402
from lora_oracle import forward, module_dims, peft_name, read_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "golden", "models")
OUT = os.path.join(HERE, "..", "golden", "training")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CASES = [
    # GQA (4 heads over 2 KV heads), tied embeddings, f32; all seven modules; two examples in one step
    dict(name="llama_gqa_tied_all", model="llama_gqa_tied", r=4, alpha=8, targets=ALL, lengths=[13, 9]),
    # qwen2: q/k/v bias, untied head; all seven modules, rank 8
    dict(name="qwen2_bias_all", model="qwen2_bias", r=8, alpha=16, targets=ALL, lengths=[11, 16]),
    # llama3 rope scaling, one KV head, head_dim 32 (q width 128 != hidden 64), bf16 weights; a subset of modules
    dict(name="llama3_scaled_bf16_subset", model="llama3_scaled_bf16", r=4, alpha=4, targets=["q_proj", "k_proj", "o_proj", "up_proj"],
         lengths=[12, 7]),
    # mistral head_dim 64, one KV head; v and down only
    dict(name="mistral_hd64_vdown", model="mistral_hd64", r=2, alpha=4, targets=["v_proj", "down_proj"], lengths=[10]),
    # three AdamW steps with warmup, weight decay and clipping; two micro-batches of one example per step
    dict(name="llama_gqa_tied_adamw", model="llama_gqa_tied", r=4, alpha=8, targets=["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
         lengths=[9, 12, 8, 10, 11, 7], steps=3, per_step=2,
         hp=dict(learning_rate=0.002, warmup_steps=2, schedule="linear", weight_decay=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                 max_grad_norm=0.05)),
    dict(name="qwen2_bias_adamw_cosine", model="qwen2_bias", r=2, alpha=2, targets=ALL,
         lengths=[8, 9, 10], steps=3, per_step=1,
         hp=dict(learning_rate=0.005, warmup_steps=1, schedule="cosine", weight_decay=0.0, beta1=0.8, beta2=0.95, eps=1e-6,
                 max_grad_norm=0.0)),
]


def load_model(name):
    mdir = os.path.join(MODELS, name)
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    W = {}
    for fn in sorted(os.listdir(mdir)):
        if fn.endswith(".safetensors") and fn != "golden.safetensors":
            W.update(read_safetensors(os.path.join(mdir, fn)))
    return cfg, {k: v.double() for k, v in W.items()}


def make_examples(gen, lengths, vocab):
    examples = []
    for i, n in enumerate(lengths):
        tokens = [317] + torch.randint(0, vocab - 3, (n - 1,), generator=gen).tolist()
        prompt = 2 + i % 3
        mask = [False] * prompt + [True] * (n - prompt)
        if n > 8:                      # an untrained gap inside the sequence (a user turn between assistant turns)
            mask[prompt + 2] = False
        examples.append((tokens, mask))
    return examples


def step_loss(cfg, W, lora, scale, batch):
    total = sum(sum(m[1:]) for _, m in batch)
    loss = torch.zeros((), dtype=torch.float64)
    for tokens, mask in batch:
        logits = forward(cfg, W, tokens, lora, scale)          # (T, vocab)
        logp = torch.log_softmax(logits[:-1], dim=-1)           # predicts tokens 1..T-1
        target = torch.tensor(tokens[1:])
        m = torch.tensor(mask[1:], dtype=torch.float64)
        loss = loss - (logp.gather(1, target[:, None])[:, 0] * m).sum()
    return loss / total, total


def lr_at(hp, s, total):
    lr, warm = hp["learning_rate"], hp["warmup_steps"]
    if s < warm:
        return lr * (s + 1) / warm
    if hp["schedule"] == "constant" or total == warm:
        return lr
    frac = (s - warm) / (total - warm)
    if hp["schedule"] == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * frac))
    return lr * (1 - frac)


def main():
    for ci, c in enumerate(CASES):
        cfg, W = load_model(c["model"])
        gen = torch.Generator().manual_seed(5000 + ci)
        r = c["r"]
        scale = c["alpha"] / r
        tensors, lora, params = {}, {}, []
        for l in range(cfg["num_hidden_layers"]):
            for m in c["targets"]:
                fin, fout = module_dims(cfg, m)
                A = (torch.rand(r, fin, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fin)
                B = torch.randn(fout, r, generator=gen, dtype=torch.float64) * 0.3 / math.sqrt(r)
                A, B = A.float(), B.float()
                tensors[peft_name(l, m, "A")] = A
                tensors[peft_name(l, m, "B")] = B
                a, b = A.double().requires_grad_(), B.double().requires_grad_()
                lora[(l, m)] = (a, b)
                params += [(peft_name(l, m, "A"), a), (peft_name(l, m, "B"), b)]
        examples = make_examples(gen, c["lengths"], cfg["vocab_size"])

        out = os.path.join(OUT, c["name"])
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        config = {
            "alpha_pattern": {}, "base_model_name_or_path": f"loom-golden/{c['model']}", "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_to_transform": None,
            "lora_alpha": c["alpha"], "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA", "r": r,
            "rank_pattern": {}, "target_modules": c["targets"], "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False,
        }
        with open(os.path.join(out, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)

        golden = {}
        steps, per_step = c.get("steps", 1), c.get("per_step", len(examples))
        hp = c.get("hp")
        opt = None
        if hp:
            opt = torch.optim.AdamW([p for _, p in params], lr=hp["learning_rate"], betas=(hp["beta1"], hp["beta2"]),
                                    eps=hp["eps"], weight_decay=hp["weight_decay"])
        losses, norms, lrs = [], [], []
        for s in range(steps):
            batch = examples[s * per_step:(s + 1) * per_step]
            for _, p in params:
                p.grad = None
            loss, _ = step_loss(cfg, W, lora, scale, batch)
            loss.backward()
            losses.append(loss.item())
            if s == 0:
                for name, p in params:
                    golden["grad." + name] = p.grad.float()
            if opt is None:
                break
            norm = torch.sqrt(sum((p.grad ** 2).sum() for _, p in params)).item()
            norms.append(norm)
            if hp["max_grad_norm"] > 0:
                coef = hp["max_grad_norm"] / (norm + 1e-6)
                if coef < 1:
                    for _, p in params:
                        p.grad.mul_(coef)
            lr = lr_at(hp, s, steps)
            lrs.append(lr)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            for name, p in params:
                golden[f"step{s + 1}.{name}"] = p.detach().float()
        if opt is not None:
            with torch.no_grad():
                for i, (tokens, _) in enumerate(examples):
                    golden[f"logits.{i}"] = forward(cfg, W, tokens, lora, scale).float()
        write_safetensors(os.path.join(out, "golden.safetensors"), golden)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump({"model": c["model"], "rank": r, "alpha": c["alpha"], "targets": c["targets"],
                       "examples": [{"tokens": t, "mask": m} for t, m in examples],
                       "steps": steps, "per_step": per_step, "hyperparameters": hp,
                       "losses": losses, "grad_norms": norms, "learning_rates": lrs,
                       "note": "float64 autograd by tests/reference/training_oracle.py"}, f, indent=1)
        print(c["name"], "losses", [round(x, 5) for x in losses], "norms", [round(x, 4) for x in norms])


if __name__ == "__main__":
    sys.exit(main())
