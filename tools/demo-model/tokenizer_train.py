"""Trains the demo model's BPE tokenizer on the training split of the WordNet corpus."""
import argparse
import os
import time

import bpe
import corpus


def tokenizer_texts(train_records):
    texts = []
    for r in train_records:
        for w in r["lemmas"]:
            texts.append(corpus.answer(w, r))
    for p, _ in corpus.PROMPTS:
        texts.append("user\n" + p.format(w="") + "\nassistant\n")
    return texts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out", "tokenizer.json"))
    args = ap.parse_args()
    t0 = time.time()
    train, _ = corpus.split(corpus.load_synsets())
    vocab, merges = bpe.train_bpe(tokenizer_texts(train), args.vocab_size, corpus.SPECIAL_TOKENS)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    bpe.save(args.out, vocab, merges, corpus.SPECIAL_TOKENS)
    print(f"vocab {len(vocab)} merges {len(merges)} in {time.time() - t0:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
