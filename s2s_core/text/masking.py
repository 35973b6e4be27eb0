"""Training pairs for a model that translates with protected spans (``TokenizerConfig.placeholders``).

``mask_pair``: a span found on both sides (the same text) becomes the same placeholder on both, as
``protect`` will make it at translation; a span on one side only (a menu path the translator
translated, a line break re-wrapped) stays text, so the model is never taught to drop or invent one.

``inject_placeholder``: a share of the pairs without any shared span get one synthetic placeholder at
aligned positions, so the model learns to copy a token it knows nothing about wherever it occurs. The
alignment is the simplest that is right: a word that occurs exactly once on each side, identically
(numbers, names, code), is replaced on both; without one, both sides get it at the same end.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from s2s_core.text.spans import DEFAULT_RULES, MAX_PLACEHOLDERS, SpanRules, find_spans, placeholder

_WORD = re.compile(r"(?<!\w)\w[\w.'-]*\w(?!\w)|(?<!\w)\d(?!\w)")


def mask_pair(src: str, tgt: str, rules: SpanRules = DEFAULT_RULES) -> tuple[str, str, int]:
    """Both sides with their shared spans as placeholders (indexed in source order, as ``protect``
    indexes them), and how many were masked."""
    src_spans, tgt_spans = find_spans(src, rules), find_spans(tgt, rules)
    if not src_spans or not tgt_spans:
        return src, tgt, 0
    shared = Counter(s.text for s in src_spans) & Counter(s.text for s in tgt_spans)
    indices: dict[str, list[int]] = {}
    src_pieces, at, count = [], 0, 0
    for span in src_spans:
        if count < MAX_PLACEHOLDERS and len(indices.get(span.text, ())) < shared[span.text]:
            indices.setdefault(span.text, []).append(count)
            src_pieces += [src[at:span.start], placeholder(count)]
            at, count = span.end, count + 1
    src_pieces.append(src[at:])
    tgt_pieces, at = [], 0
    for span in tgt_spans:
        if indices.get(span.text):
            tgt_pieces += [tgt[at:span.start], placeholder(indices[span.text].pop(0))]
            at = span.end
    tgt_pieces.append(tgt[at:])
    return "".join(src_pieces), "".join(tgt_pieces), count


def inject_placeholder(src: str, tgt: str, rng: random.Random) -> tuple[str, str]:
    """One synthetic placeholder ⦅0⦆ at aligned positions of a pair without spans."""
    src_words, tgt_words = Counter(_WORD.findall(src)), Counter(_WORD.findall(tgt))
    anchors = sorted(w for w, n in src_words.items() if n == 1 and tgt_words.get(w) == 1)
    token = placeholder(0)
    if anchors:
        word = rng.choice(anchors)
        pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)")
        return pattern.sub(token, src, count=1), pattern.sub(token, tgt, count=1)
    if rng.random() < 0.5:
        return f"{token} {src}", f"{token} {tgt}"
    return f"{src} {token}", f"{tgt} {token}"


def training_pairs(src: Sequence[str], tgt: Sequence[str], inject_share: float, seed: int = 0,
                   rules: SpanRules = DEFAULT_RULES) -> tuple[list[str], list[str], dict]:
    """Every pair masked (``mask_pair``), and ``inject_share`` of the pairs without any span given a
    synthetic placeholder; returns both sides and counts (pairs masked, spans masked, pairs injected)."""
    rng = random.Random(seed)
    out_src, out_tgt = [], []
    stats = {"pairs_masked": 0, "spans_masked": 0, "pairs_injected": 0}
    for s, t in zip(src, tgt, strict=True):
        s, t = s or "", t or ""
        s, t, masked = mask_pair(s, t, rules)
        if masked:
            stats["pairs_masked"] += 1
            stats["spans_masked"] += masked
        elif (s and t and rng.random() < inject_share
              and not find_spans(s, rules) and not find_spans(t, rules)):
            s, t = inject_placeholder(s, t, rng)
            stats["pairs_injected"] += 1
        out_src.append(s)
        out_tgt.append(t)
    return out_src, out_tgt, stats
