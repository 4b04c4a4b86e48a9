"""Builds the WordNet 3.0 definition corpus used to train the Loom demo model.

Every synset becomes a record {id, pos, lemmas, gloss}. Training text is rendered from
records in two shapes:

  plain:  harbor (noun): a sheltered port where ships can take on or discharge cargo
  chat:   <|im_start|>user\nDefine: harbor<|im_end|>\n<|im_start|>assistant\nharbor (noun): ...<|im_end|>

A fixed, seeded set of synsets is held out of training entirely for evaluation.
"""
import os
import random

WORDNET_DIR = "/usr/share/wordnet"
POS_FILES = [("noun", "data.noun"), ("verb", "data.verb"), ("adjective", "data.adj"), ("adverb", "data.adv")]
HELDOUT_SYNSETS = 300
HELDOUT_SEED = 20261122

EOT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOT, IM_START, IM_END]

# Prompt shapes for the chat form; "Define: w" is the primary one.
PROMPTS = [
    ("Define: {w}", 0.70),
    ("Define {w}", 0.10),
    ("What does {w} mean?", 0.10),
    ("What is the meaning of {w}?", 0.10),
]


def _clean_lemma(raw):
    # Adjective lemmas may carry a syntactic marker such as "(a)", "(p)" or "(ip)".
    if raw.endswith(")") and "(" in raw:
        raw = raw[: raw.index("(")]
    return raw.replace("_", " ")


def load_synsets(wordnet_dir=WORDNET_DIR):
    records = []
    for pos, fname in POS_FILES:
        with open(os.path.join(wordnet_dir, fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                head, _, gloss = line.partition(" | ")
                parts = head.split()
                offset = parts[0]
                w_cnt = int(parts[3], 16)
                lemmas = []
                for i in range(w_cnt):
                    lemma = _clean_lemma(parts[4 + 2 * i])
                    if lemma not in lemmas:
                        lemmas.append(lemma)
                gloss = " ".join(gloss.strip().split())
                if not gloss or not lemmas:
                    continue
                records.append({"id": f"{pos[:3]}{offset}", "pos": pos, "lemmas": lemmas, "gloss": gloss})
    return records


def split(records):
    rng = random.Random(HELDOUT_SEED)
    ids = sorted(r["id"] for r in records)
    held = set(rng.sample(ids, HELDOUT_SYNSETS))
    train = [r for r in records if r["id"] not in held]
    heldout = sorted((r for r in records if r["id"] in held), key=lambda r: r["id"])
    return train, heldout


def answer(word, rec):
    return f"{word} ({rec['pos']}): {rec['gloss']}"


def plain_text(word, rec):
    return answer(word, rec) + EOT


def chat_prompt(user_text):
    return f"{IM_START}user\n{user_text}{IM_END}\n{IM_START}assistant\n"


def chat_text(word, rec, prompt="Define: {w}"):
    return chat_prompt(prompt.format(w=word)) + answer(word, rec) + IM_END


def pick_prompt(rng):
    x = rng.random()
    acc = 0.0
    for p, w in PROMPTS:
        acc += w
        if x < acc:
            return p
    return PROMPTS[0][0]
