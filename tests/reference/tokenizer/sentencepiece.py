"""The SentencePiece-style reference tokenizer: BPE over characters with ▁ for spaces and byte fallback."""
import collections

import ref_bpe as R
import templates
from corpus import CORPUS
from families import NUM_MERGES, added_token

SPACE = "\u2581"


class SentencePieceFamily:
    def __init__(self, name, metaspace):
        """metaspace=False: Llama-2 layout (Prepend + Replace normalizer, Strip decoder), ▁ prepended to every
        text segment between added tokens. metaspace=True: Metaspace pre-tokenizer and decoder with
        prepend_scheme "first", ▁ prepended only to a segment at the start of the input that does not already
        begin with ▁."""
        self.name, self.metaspace = name, metaspace
        counts = collections.Counter(CORPUS.replace(" ", SPACE))
        chars = sorted(c for c, n in counts.items() if n >= 2 and c not in "\n\r\t")
        words = collections.Counter(SPACE + w for w in CORPUS.split())
        self.merges = R.train(words, NUM_MERGES, lambda w: [c if c in chars else "\0" for c in w])
        self.merges = [m for m in self.merges if "\0" not in m[0] + m[1]]
        self.vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        for b in range(256):
            self.vocab[f"<0x{b:02X}>"] = len(self.vocab)
        for c in chars:
            self.vocab.setdefault(c, len(self.vocab))
        for a, b in self.merges:
            self.vocab.setdefault(a + b, len(self.vocab))
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.added = {"<unk>": (0, True), "<s>": (1, True), "</s>": (2, True)}
        self.bos, self.eos, self.template = "<s>", "</s>", templates.LLAMA2

    def encode(self, text, add_special=False):
        ids = [1] if add_special else []
        offset = 0
        for piece, is_added in R.split_added(text, list(self.added)):
            start, offset = offset, offset + len(piece)
            if is_added:
                ids.append(self.added[piece][0])
                continue
            piece = piece.replace(" ", SPACE)
            if not self.metaspace:
                piece = SPACE + piece
            elif start == 0 and not piece.startswith(SPACE):
                piece = SPACE + piece
            symbols = []
            for c in piece:
                if c in self.vocab:
                    symbols.append(c)
                else:
                    symbols.extend(f"<0x{b:02X}>" for b in c.encode("utf-8"))
            ids.extend(self.vocab[s] for s in R.bpe(symbols, self.ranks))
        return ids

    def decode(self, ids, skip_special):
        inverse = {i: t for t, i in self.vocab.items()}
        out = bytearray()
        for i in ids:
            token = inverse[i]
            if i in (0, 1, 2):
                if not skip_special:
                    out += token.encode("utf-8")
            elif token.startswith("<0x") and len(token) == 6:
                out.append(int(token[3:5], 16))
            else:
                out += token.replace(SPACE, " ").encode("utf-8")
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text

    def tokenizer_json(self):
        # Both layouts decode the same way: ▁ to space, <0xXX> to bytes, then one leading space stripped.
        decoder = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        if self.metaspace:
            normalizer = None
            pre = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False}
        else:
            normalizer = {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": SPACE},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]}
            pre = None
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added_token(i, t, s) for t, (i, s) in self.added.items()],
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder,
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]},
        }

    def tokenizer_config(self):
        def token(content):
            return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False,
                    "rstrip": False, "single_word": False}
        return {"add_bos_token": True, "add_eos_token": False, "bos_token": token("<s>"), "eos_token": token("</s>"),
                "unk_token": token("<unk>"), "chat_template": self.template, "legacy": True,
                "model_max_length": 4096, "tokenizer_class": "LlamaTokenizer"}
