"""An independent reference BPE (training, encoding, decoding) used to produce golden ids.

It follows the GPT-2 style merge loop: repeatedly merge every occurrence of the lowest-ranked
adjacent pair, left to right, until no ranked pair remains.
"""
import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                 r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def byte_to_char():
    """The byte-level alphabet: printable Latin-1 bytes map to themselves, the rest to 256+n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = byte_to_char()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# Vocabulary order for the 256 single-byte tokens: printable bytes first, then the others.
BYTE_ORDER = sorted(range(256), key=lambda b: ord(BYTE_TO_CHAR[b]))


def to_byte_level(text):
    return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def split_isolated(text, pattern):
    """Split keeping both the matches and the gaps between them (behavior Isolated)."""
    pieces, pos = [], 0
    for m in regex.finditer(pattern, text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()])
        if m.end() > m.start():
            pieces.append(m.group(0))
        pos = m.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def bpe(symbols, ranks):
    """Merges a list of symbols by rank. ranks maps (left, right) to rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        best = None
        for pair in zip(symbols, symbols[1:]):
            r = ranks.get(pair)
            if r is not None and (best is None or r < best[0]):
                best = (r, pair)
        if best is None:
            break
        left, right = best[1]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                merged.append(left + right)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def train(words, num_merges, initial):
    """Learns merges from a word -> count table. Ties break on the lexicographically smallest pair."""
    splits = {w: list(initial(w)) for w in words}
    merges = []
    for _ in range(num_merges):
        counts = {}
        for w, n in words.items():
            s = splits[w]
            for pair in zip(s, s[1:]):
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        top = max(counts.values())
        pair = min(p for p, c in counts.items() if c == top)
        merges.append(pair)
        rank = {pair: 0}
        for w in words:
            splits[w] = bpe(splits[w], rank)
    return merges


def split_added(text, added):
    """Splits out added tokens, leftmost-longest, matched literally. Yields (piece, is_added)."""
    if not added:
        return [(text, False)] if text else []
    alternation = "|".join(regex.escape(t) for t in sorted(added, key=len, reverse=True))
    out, pos = [], 0
    for m in regex.finditer(alternation, text):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out
