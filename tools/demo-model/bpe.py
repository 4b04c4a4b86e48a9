"""A small byte-level BPE (GPT-2 style) trainer, encoder and tokenizer.json writer.

Pre-tokenization uses the GPT-2 regex and GPT-2's bytes_to_unicode table, so the files
written here load with any Hugging Face-compatible byte-level BPE implementation.
"""
import json
from collections import Counter, defaultdict

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PAT = regex.compile(GPT2_PATTERN)


def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def pretokenize(text):
    return _PAT.findall(text)


def to_symbols(piece):
    return "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


def train_bpe(texts, vocab_size, specials):
    """Learns merges until the vocabulary (256 bytes + merges + specials) reaches vocab_size."""
    counts = Counter()
    for t in texts:
        counts.update(pretokenize(t))
    words = [list(to_symbols(p)) for p in counts]
    freqs = list(counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] += freqs[i]
            where[(a, b)].add(i)
    # Base vocabulary: one token per byte, id == byte value.
    vocab = {BYTE_ENCODER[b]: b for b in range(256)}
    merges = []
    n_merges = vocab_size - 256 - len(specials)
    while len(merges) < n_merges and pair_counts:
        best = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pair_counts[best] < 2:
            break
        a, b = best
        merged = a + b
        merges.append(best)
        vocab[merged] = len(vocab)
        for i in list(where[best]):
            w = words[i]
            f = freqs[i]
            for p in zip(w, w[1:]):
                pair_counts[p] -= f
                if pair_counts[p] <= 0:
                    del pair_counts[p]
                where[p].discard(i)
            out = []
            j = 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pair_counts[p] += f
                where[p].add(i)
        where.pop(best, None)
        pair_counts.pop(best, None)
    for s in specials:
        vocab[s] = len(vocab)
    return vocab, merges


class Tokenizer:
    def __init__(self, vocab, merges, specials):
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.specials = list(specials)
        self.special_re = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
        self.cache = {}

    def _bpe(self, piece):
        hit = self.cache.get(piece)
        if hit is not None:
            return hit
        w = list(to_symbols(piece))
        while len(w) > 1:
            best = None
            best_rank = None
            for j in range(len(w) - 1):
                r = self.ranks.get((w[j], w[j + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = j, r
            if best is None:
                break
            a, b = w[best], w[best + 1]
            out = []
            j = 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            w = out
        ids = [self.vocab[s] for s in w]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for chunk in self.special_re.split(text):
            if not chunk:
                continue
            if chunk in self.specials:
                ids.append(self.vocab[chunk])
                continue
            for piece in pretokenize(chunk):
                ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids, skip_special=False):
        parts = []
        buf = bytearray()
        for i in ids:
            t = self.id_to_token[i]
            if t in self.specials:
                parts.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                if not skip_special:
                    parts.append(t)
            else:
                buf.extend(BYTE_DECODER[c] for c in t)
        parts.append(buf.decode("utf-8", errors="replace"))
        return "".join(parts)


def tokenizer_json(vocab, merges, specials):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s in specials
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def save(path, vocab, merges, specials):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges, specials), f, ensure_ascii=False, indent=1)


def load(path):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    specials = [t["content"] for t in j["added_tokens"]]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
    return Tokenizer(j["model"]["vocab"], merges, specials)
