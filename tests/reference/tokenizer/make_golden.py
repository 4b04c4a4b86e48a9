"""Writes tests/golden/tokenizers/<name>/{tokenizer.json, tokenizer_config.json, golden.json}.

Run: /usr/bin/python3 tests/reference/tokenizer/make_golden.py   (needs the `regex` module)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import families  # noqa: E402
from corpus import TEST_STRINGS  # noqa: E402
from sentencepiece import SentencePieceFamily  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "golden", "tokenizers")

SPECIALS = {
    "gpt2-chatml": ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"),
    "qwen2": ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    "llama2-sp": ("<s>", "<s>", "</s>"),
    "mistral-metaspace": ("<s>", "<s>", "</s>"),
}


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    tokenizers = [families.gpt2(), families.llama3(), families.qwen2(),
                  SentencePieceFamily("llama2-sp", metaspace=False),
                  SentencePieceFamily("mistral-metaspace", metaspace=True)]
    for tok in tokenizers:
        folder = os.path.join(OUT, tok.name)
        os.makedirs(folder, exist_ok=True)
        write(os.path.join(folder, "tokenizer.json"), tok.tokenizer_json())
        write(os.path.join(folder, "tokenizer_config.json"), tok.tokenizer_config())
        bos, start, end = SPECIALS[tok.name]
        cases = []
        for template in TEST_STRINGS:
            text = template.format(bos=bos, start=start, end=end)
            ids = tok.encode(text)
            cases.append({"text": text, "ids": ids, "ids_with_special": tok.encode(text, add_special=True),
                          "decoded": tok.decode(ids, skip_special=False),
                          "decoded_skip_special": tok.decode(ids, skip_special=True)})
        with open(os.path.join(folder, "golden.json"), "w", encoding="utf-8") as f:
            lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
            f.write('{"tokenizer": "%s", "cases": [\n%s\n]}\n' % (tok.name, lines))
        print(tok.name, len(tok.vocab), "vocab", len(tok.merges), "merges")


if __name__ == "__main__":
    main()
