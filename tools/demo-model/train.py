"""Trains the Loom demo model (Llama architecture) on the WordNet definition corpus, on CPU.

The learning-rate schedule runs on progress = max(step / max_steps, elapsed / time_budget), so a
run finishes inside its wall-clock budget however busy the machine is. Checkpoints are written
periodically to out/ckpt.pt and a run resumes from there with --resume.
"""
import os

# Under CPU contention, OpenMP threads that spin while waiting collapse throughput; sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F

import bpe
import corpus
from model import Config, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


def render_epoch(train, tok, epoch, seed, chat_fraction, max_len):
    rng = random.Random(seed * 1000 + epoch)
    seqs = []
    for r in train:
        w = rng.choice(r["lemmas"])
        if rng.random() < chat_fraction:
            text = corpus.chat_text(w, r, corpus.pick_prompt(rng))
        else:
            text = corpus.plain_text(w, r)
        seqs.append(tok.encode(text)[:max_len + 1])
    return seqs, rng


def make_batches(seqs, rng, batch_size):
    order = list(range(len(seqs)))
    rng.shuffle(order)
    group = batch_size * 64
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g:g + group], key=lambda i: len(seqs[i]))
        batches.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(seqs, idx, pad_id):
    T = max(len(seqs[i]) for i in idx)
    ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), T), -100, dtype=torch.long)
    for row, i in enumerate(idx):
        s = torch.tensor(seqs[i], dtype=torch.long)
        ids[row, :len(s)] = s
        labels[row, :len(s)] = s
    return ids[:, :-1], labels[:, 1:]


def heldout_loss(model, seqs, pad_id, bf16=True):
    """Mean cross-entropy (nats/token) over every next-token position of every held-out sequence."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(seqs), 64):
            idx = list(range(b, min(b + 64, len(seqs))))
            x, y = collate(seqs, idx, pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((y != -100).sum())
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--time-budget-min", type=float, default=75)
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--chat-fraction", type=float, default=0.5)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=688)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every-min", type=float, default=5)
    ap.add_argument("--eval-every-min", type=float, default=10)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    tok = bpe.load(os.path.join(args.out, "tokenizer.json"))
    pad_id = tok.vocab[corpus.EOT]
    train, heldout = corpus.split(corpus.load_synsets())
    held_seqs = [tok.encode(corpus.plain_text(r["lemmas"][0], r)) for r in heldout]

    cfg = Config(vocab_size=len(tok.vocab), hidden_size=args.hidden, intermediate_size=args.intermediate,
                 num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                 head_dim=args.hidden // args.heads, max_position_embeddings=args.context)
    model = LlamaForCausalLM(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step, epoch, batch_pos, elapsed_before, tokens_seen = 0, 0, 0, 0.0, 0
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, epoch, batch_pos = ck["step"], ck["epoch"], ck["batch_pos"]
        elapsed_before, tokens_seen = ck["elapsed"], ck["tokens"]
        print(f"resumed at step {step} epoch {epoch} elapsed {elapsed_before/60:.1f} min", flush=True)
    print(f"config {json.dumps(cfg.to_dict())} params {model.num_params()}", flush=True)

    def save_ckpt(path):
        tmp = path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "epoch": epoch,
                    "batch_pos": batch_pos, "elapsed": elapsed_before + time.time() - t0, "tokens": tokens_seen,
                    "config": cfg.to_dict(), "args": vars(args)}, tmp)
        os.replace(tmp, path)

    budget = args.time_budget_min * 60
    t0 = time.time()
    last_ckpt = last_eval = t0
    log_loss, log_n, log_t = 0.0, 0, time.time()
    done = False
    while not done:
        seqs, rng = render_epoch(train, tok, epoch, args.seed, args.chat_fraction, args.context)
        batches = make_batches(seqs, rng, args.batch_size)
        while batch_pos < len(batches):
            elapsed = elapsed_before + time.time() - t0
            progress = max(step / args.max_steps, elapsed / budget)
            if progress >= 1.0:
                done = True
                break
            lr = args.lr * min(1.0, (step + 1) / args.warmup) * (
                args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = collate(seqs, batches[batch_pos], pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, cfg.vocab_size), y.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            batch_pos += 1
            n = int((y != -100).sum())
            tokens_seen += n
            log_loss += loss.item() * n
            log_n += n
            now = time.time()
            if step % 50 == 0:
                print(f"step {step} epoch {epoch} loss {log_loss / log_n:.4f} lr {lr:.2e} "
                      f"tok/s {log_n / (now - log_t):.0f} tokens {tokens_seen} elapsed {(elapsed_before + now - t0) / 60:.1f}m "
                      f"progress {progress:.3f}", flush=True)
                log_loss, log_n, log_t = 0.0, 0, now
            if now - last_eval > args.eval_every_min * 60:
                print(f"eval step {step} heldout_loss {heldout_loss(model, held_seqs, pad_id):.4f}", flush=True)
                last_eval = time.time()
            if now - last_ckpt > args.ckpt_every_min * 60:
                save_ckpt(ckpt_path)
                last_ckpt = time.time()
        if not done:
            epoch += 1
            batch_pos = 0
    save_ckpt(ckpt_path)
    final = os.path.join(args.out, "final.pt")
    save_ckpt(final)
    hl = heldout_loss(model, held_seqs, pad_id)
    print(f"done step {step} epochs {epoch} tokens {tokens_seen} "
          f"train_time_min {(elapsed_before + time.time() - t0) / 60:.1f} heldout_loss_bf16 {hl:.4f} ppl {math.exp(hl):.2f}", flush=True)


if __name__ == "__main__":
    main()
