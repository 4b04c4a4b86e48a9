"""Exports a trained checkpoint to models/loom-demo in Hugging Face Llama layout, and writes the
golden evaluation files that Loom's engine is tested against.

Everything evaluated here uses the weights exactly as saved (rounded to bfloat16), computed in
float32: the held-out loss, the greedy completions and the samples.
"""
import os

# Under CPU contention, OpenMP threads that spin while waiting collapse throughput; sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import os
import random
import shutil
import struct

import torch
import torch.nn.functional as F

import bpe
import corpus
from model import Config, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def write_safetensors(path, tensors, metadata=None):
    """Writes safetensors: u64 LE header size, JSON header (space-padded to 8 bytes), raw LE data."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        buf = bytearray(data[a:b])
        if h["dtype"] == "BF16":
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(buf, dtype=torch.float32)
        out[name] = t.reshape(h["shape"])
    return out


def chat_prompt_ids(tok, user_text):
    return tok.encode(corpus.chat_prompt(user_text))


@torch.no_grad()
def forward_cached(model, new_ids, past):
    """Runs new_ids after the positions held in past (a list of per-layer (k, v), or None) and returns
    the logits of the last position and the extended cache. Same math as LlamaForCausalLM.forward."""
    cfg = model.cfg
    start = 0 if past is None else past[0][0].shape[2]
    T = len(new_ids)
    x = model.model.embed_tokens(torch.tensor([new_ids]))
    cos, sin = model.rope_cos[start:start + T], model.rope_sin[start:start + T]
    rep = cfg.num_attention_heads // cfg.num_key_value_heads
    # query i sits at position start+i and sees keys 0..start+i
    mask = torch.ones(T, start + T, dtype=torch.bool).triu(start + 1)
    new_past = []
    for li, layer in enumerate(model.model.layers):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q = a.q_proj(h).view(1, T, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
        k = a.k_proj(h).view(1, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        v = a.v_proj(h).view(1, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        q = q * cos + torch.cat([-q[..., cfg.head_dim // 2:], q[..., :cfg.head_dim // 2]], -1) * sin
        k = k * cos + torch.cat([-k[..., cfg.head_dim // 2:], k[..., :cfg.head_dim // 2]], -1) * sin
        if past is not None:
            k = torch.cat([past[li][0], k], dim=2)
            v = torch.cat([past[li][1], v], dim=2)
        new_past.append((k, v))
        kk = k.repeat_interleave(rep, dim=1)
        vv = v.repeat_interleave(rep, dim=1)
        att = (q @ kk.transpose(-2, -1)) * (1.0 / math.sqrt(cfg.head_dim))
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        x = x + a.o_proj((att @ vv).transpose(1, 2).reshape(1, T, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    x = model.model.norm(x[:, -1:])
    return (x @ model.model.embed_tokens.weight.t())[0, -1], new_past


@torch.no_grad()
def greedy(model, ids, stop_ids, max_new, ctx):
    """Greedy decoding with a KV cache. Returns generated ids (including the stop id if one was
    produced) and the smallest top-1/top-2 logit gap seen. Stops after a stop id, after max_new ids,
    or when prompt + generated reaches the context limit."""
    out = []
    min_gap = float("inf")
    logits, past = forward_cached(model, list(ids), None)
    while True:
        top = torch.topk(logits, 2)
        min_gap = min(min_gap, float(top.values[0] - top.values[1]))
        nxt = int(top.indices[0])
        out.append(nxt)
        if nxt in stop_ids or len(out) >= max_new or len(ids) + len(out) >= ctx:
            break
        logits, past = forward_cached(model, [nxt], past)
    return out, min_gap


@torch.no_grad()
def check_cached_matches_full(model, ids):
    full = model(torch.tensor([ids]))[0, -1]
    logits, past = forward_cached(model, ids[:-3], None)
    for t in ids[-3:]:
        logits, past = forward_cached(model, [t], past)
    diff = float((full - logits).abs().max())
    assert diff < 1e-3, f"cached decode differs from full forward by {diff}"
    return diff


@torch.no_grad()
def mean_ce(model, seqs):
    total, count = 0.0, 0
    for s in seqs:
        x = torch.tensor([s[:-1]])
        y = torch.tensor(s[1:])
        logits = model(x)[0]
        total += float(F.cross_entropy(logits, y, reduction="sum"))
        count += len(s) - 1
    return total / count, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(HERE, "out", "final.pt"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "out", "tokenizer.json"))
    ap.add_argument("--dest", default=os.path.join(REPO, "models", "loom-demo"))
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--golden-count", type=int, default=5)
    ap.add_argument("--golden-candidates", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ck = torch.load(args.ckpt)
    cfg = Config(**ck["config"])
    tok = bpe.load(args.tokenizer)
    eot, im_start, im_end = (tok.vocab[s] for s in corpus.SPECIAL_TOKENS)
    os.makedirs(os.path.join(args.dest, "eval"), exist_ok=True)

    # Weights: bf16 on disk; no lm_head (tied to embed_tokens).
    state = {k: v.detach().to(torch.bfloat16) for k, v in ck["model"].items()}
    st_path = os.path.join(args.dest, "model.safetensors")
    write_safetensors(st_path, state, {"format": "pt"})
    back = read_safetensors(st_path)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)

    model = LlamaForCausalLM(cfg)
    model.load_state_dict({k: v.float() for k, v in back.items()})
    model.eval()
    n_params = model.num_params()

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": im_end,
        "pad_token_id": eot,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }
    gen_config = {"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot,
                  "do_sample": False, "max_new_tokens": 64}
    added = {str(tok.vocab[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                  "single_word": False, "special": True} for s in corpus.SPECIAL_TOKENS}
    tok_config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [corpus.IM_START, corpus.IM_END],
        "bos_token": None,
        "eos_token": corpus.IM_END,
        "pad_token": corpus.EOT,
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg.max_position_embeddings,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    special_map = {"eos_token": corpus.IM_END, "pad_token": corpus.EOT,
                   "additional_special_tokens": [corpus.IM_START, corpus.IM_END]}
    for name, obj in [("config.json", config), ("generation_config.json", gen_config),
                      ("tokenizer_config.json", tok_config), ("special_tokens_map.json", special_map)]:
        with open(os.path.join(args.dest, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    shutil.copyfile(args.tokenizer, os.path.join(args.dest, "tokenizer.json"))

    # Held-out loss over the exact ids written to eval/heldout.json.
    train, heldout = corpus.split(corpus.load_synsets())
    held_texts = [corpus.plain_text(r["lemmas"][0], r) for r in heldout]
    held_seqs = [tok.encode(t) for t in held_texts]
    assert all(len(s) <= cfg.max_position_embeddings + 1 for s in held_seqs)
    print(f"cached vs full forward: max |diff| {check_cached_matches_full(model, held_seqs[0]):.2e}", flush=True)
    ce, n_scored = mean_ce(model, held_seqs)
    with open(os.path.join(args.dest, "eval", "heldout.json"), "w", encoding="utf-8") as f:
        json.dump({
            "description": "Held-out WordNet synsets (never trained on), one plain line per synset: "
                           "'word (pos): gloss<|endoftext|>', encoded with models/loom-demo/tokenizer.json.",
            "masking": "Each sequence is run alone from position 0 with no BOS and no padding. For a sequence of n ids, "
                       "positions 0..n-2 predict ids 1..n-1; every such prediction is scored (n-1 per sequence). "
                       "mean_cross_entropy = sum of -log softmax(logits)[next id] over all scored positions of all "
                       "sequences / num_scored_tokens (natural log).",
            "weights": "model.safetensors as saved (bfloat16), computed in float32",
            "num_sequences": len(held_seqs),
            "num_scored_tokens": n_scored,
            "mean_cross_entropy": ce,
            "perplexity": math.exp(ce),
            "sequences": held_seqs,
        }, f, separators=(",", ":"))
    print(f"heldout CE {ce:.4f} nats/token, ppl {math.exp(ce):.2f} over {n_scored} tokens", flush=True)

    # Greedy golden completions for held-out words from a chat prompt. Candidates are single
    # lowercase words in seeded order; the ones with the widest top-1/top-2 gaps are kept so that a
    # float32 reimplementation with a different summation order decodes the same ids.
    rng = random.Random(7)
    cands = [r for r in heldout if r["lemmas"][0].isalpha() and r["lemmas"][0].islower()]
    rng.shuffle(cands)
    results = []
    for r in cands[:args.golden_candidates]:
        w = r["lemmas"][0]
        pids = chat_prompt_ids(tok, f"Define: {w}")
        gen, gap = greedy(model, pids, {im_end, eot}, args.max_new_tokens, cfg.max_position_embeddings)
        results.append({"word": w, "synset": r["id"], "reference": corpus.answer(w, r),
                        "prompt_ids": pids, "expected_ids": gen, "expected_text": tok.decode(gen, skip_special=True),
                        "min_top2_logit_gap": gap})
        print(f"  {w}: gap {gap:.3f} -> {tok.decode(gen)}", flush=True)
    golden = sorted(results, key=lambda x: -x["min_top2_logit_gap"])[:args.golden_count]
    with open(os.path.join(args.dest, "eval", "greedy.json"), "w", encoding="utf-8") as f:
        json.dump({
            "description": "Greedy completions for held-out words. Prompt = chat template applied to "
                           "[{role: user, content: 'Define: <word>'}] with add_generation_prompt, encoded without BOS.",
            "weights": "model.safetensors as saved (bfloat16), computed in float32",
            "max_new_tokens": args.max_new_tokens,
            "stop_token_ids": [im_end, eot],
            "stop_rule": "Decoding takes argmax at each step and stops after emitting a stop token (which is included "
                         "in expected_ids) or after max_new_tokens ids.",
            "cases": [{k: c[k] for k in ("word", "prompt", "prompt_ids", "expected_ids", "expected_text",
                                        "reference", "min_top2_logit_gap") if k in c} | {
                "prompt": corpus.chat_prompt(f"Define: {c['word']}")} for c in golden],
        }, f, indent=1, ensure_ascii=False)

    # Samples for the README: trained words (chat), held-out words (chat), plain completions.
    samples = []
    for user in ["Define: harbor", "Define: ocean", "Define: happy", "Define: run", "What does bicycle mean?",
                 "Define: computer", "Define: quickly"]:
        gen, _ = greedy(model, chat_prompt_ids(tok, user), {im_end, eot}, 64, cfg.max_position_embeddings)
        samples.append({"mode": "chat", "prompt": user, "completion": tok.decode(gen, skip_special=True)})
    for c in golden[:3]:
        samples.append({"mode": "chat (held-out word)", "prompt": f"Define: {c['word']}",
                        "completion": c["expected_text"], "wordnet": c["reference"]})
    for prefix in ["harbor (noun):", "tree (noun):", "swim (verb):"]:
        gen, _ = greedy(model, tok.encode(prefix), {im_end, eot}, 64, cfg.max_position_embeddings)
        samples.append({"mode": "completion", "prompt": prefix, "completion": tok.decode(gen, skip_special=True)})
    with open(os.path.join(args.dest, "eval", "samples.json"), "w", encoding="utf-8") as f:
        json.dump(samples, f, indent=1, ensure_ascii=False)
    for s in samples:
        print(f"[{s['mode']}] {s['prompt']!r} -> {s['completion']!r}")

    summary = {"params": n_params, "safetensors_bytes": os.path.getsize(st_path), "heldout_mean_cross_entropy": ce,
               "heldout_perplexity": math.exp(ce), "heldout_scored_tokens": n_scored, "train_steps": ck["step"],
               "train_tokens": ck["tokens"], "train_minutes": ck["elapsed"] / 60, "epochs_started": ck["epoch"] + 1,
               "train_args": ck["args"]}
    with open(os.path.join(HERE, "out", "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
