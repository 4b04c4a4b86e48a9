"""Builds the four reference tokenizers: their tokenizer.json, tokenizer_config.json, encode and decode."""
import collections
import unicodedata

import regex

import ref_bpe as R
import templates
from corpus import CORPUS

NUM_MERGES = 300


class ByteLevelFamily:
    def __init__(self, name, pattern, split_style, added, bos, eos, template, nfc=False, ignore_merges=False,
                 pair_merges=False):
        self.name, self.pattern, self.split_style = name, pattern, split_style
        self.nfc, self.ignore_merges, self.pair_merges = nfc, ignore_merges, pair_merges
        self.bos, self.eos, self.template = bos, eos, template
        words = collections.Counter(R.to_byte_level(w) for w in R.split_isolated(self.normalize(CORPUS), pattern))
        self.merges = R.train(words, NUM_MERGES, list)
        self.vocab = {}
        for b in R.BYTE_ORDER:
            self.vocab[R.BYTE_TO_CHAR[b]] = len(self.vocab)
        for a, b in self.merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.added = {}
        for content, special in added:
            self.added[content] = (len(self.vocab) + len(self.added), special)

    def normalize(self, text):
        return unicodedata.normalize("NFC", text) if self.nfc else text

    def encode(self, text, add_special=False):
        ids = [self.added[self.bos][0]] if add_special and self.bos and self.split_style == "split" else []
        for piece, is_added in R.split_added(text, list(self.added)):
            if is_added:
                ids.append(self.added[piece][0])
                continue
            for word in R.split_isolated(self.normalize(piece), self.pattern):
                chars = R.to_byte_level(word)
                if self.ignore_merges and chars in self.vocab:
                    ids.append(self.vocab[chars])
                else:
                    ids.extend(self.vocab[s] for s in R.bpe(list(chars), self.ranks))
        return ids

    def decode(self, ids, skip_special):
        inverse = {i: t for t, i in self.vocab.items()}
        added = {i: (t, s) for t, (i, s) in self.added.items()}
        out = bytearray()
        for i in ids:
            if i in added:
                if not (skip_special and added[i][1]):
                    out += added[i][0].encode("utf-8")
            else:
                out += bytes(R.CHAR_TO_BYTE[c] for c in inverse[i])
        return out.decode("utf-8", errors="replace")

    def tokenizer_json(self):
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        if self.split_style == "bytelevel":
            pre = byte_level
            post = dict(byte_level)
        else:
            split = {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated", "invert": False}
            pre = {"type": "Sequence", "pretokenizers": [split, dict(byte_level, use_regex=False)]}
            post = dict(byte_level, use_regex=False)
        if self.bos and self.split_style == "split":
            post = {"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": self.bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": self.bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": self.bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {self.bos: {"id": self.bos, "ids": [self.added[self.bos][0]], "tokens": [self.bos]}}}
        merges = [[a, b] if self.pair_merges else f"{a} {b}" for a, b in self.merges]
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added_token(i, t, s) for t, (i, s) in self.added.items()],
            "normalizer": {"type": "NFC"} if self.nfc else None,
            "pre_tokenizer": pre, "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": self.ignore_merges, "vocab": self.vocab, "merges": merges},
        }

    def tokenizer_config(self):
        return {"add_bos_token": False, "add_prefix_space": False, "bos_token": self.bos, "eos_token": self.eos,
                "chat_template": self.template, "clean_up_tokenization_spaces": False,
                "model_max_length": 8192, "tokenizer_class": "PreTrainedTokenizerFast"}


def added_token(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


GPT2_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|fim|>", False)]
LLAMA3_ADDED = [("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|start_header_id|>", True),
                ("<|end_header_id|>", True), ("<|eot_id|>", True)]
QWEN2_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True)]


def gpt2():
    return ByteLevelFamily("gpt2-chatml", R.GPT2_PATTERN, "bytelevel", GPT2_ADDED, None, "<|endoftext|>",
                           templates.CHATML)


def llama3():
    return ByteLevelFamily("llama3", R.LLAMA3_PATTERN, "split", LLAMA3_ADDED, "<|begin_of_text|>", "<|eot_id|>",
                           templates.LLAMA3, ignore_merges=True, pair_merges=True)


def qwen2():
    return ByteLevelFamily("qwen2", R.QWEN2_PATTERN, "split", QWEN2_ADDED, None, "<|im_end|>", templates.QWEN2,
                           nfc=True, pair_merges=True)
