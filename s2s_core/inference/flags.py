"""Per-row quality flags: cheap signals, computed at decoding time, that an operator would act on.

Each rule looks at one translated piece (a line or sentence) and needs nothing but its source and
target ids, the search's score and the two texts. Pure Python, no torch.

- ``low_confidence``: the model's mean log-prob per output token (EOS included: the row's ``score``)
  is below ``min_mean_log_prob``. Sequence-level translation probability is the strongest
  unsupervised quality estimate for NMT in Fomicheva et al. (TACL 2020); on the converged bible-es-en
  model's dev set the default flags the least confident 10 % of rows, whose sentence chrF is 21
  points below the others' (bench/RESULTS.md, "Quality flags"). The scale depends on the model (its
  label smoothing, its vocabulary), so each package records its own (``calibration``; read back by
  ``thresholds_from``); the default serves packages without one.
- ``length_ratio``: target/source subword ratio outside ``[min_ratio, max_ratio]`` (sources of at least
  ``ratio_min_tokens`` tokens; short rows vary too much to judge).
- ``repetition``: the same n-gram (n ≤ ``repeat_max_n``) ``repeat_times`` times in a row, or the
  hypothesis stopped at the length limit without EOS (almost always a loop).
- ``copy``: the output is (nearly) the source: character-trigram similarity of the case-folded,
  whitespace-collapsed texts ≥ ``copy_similarity`` (sources of at least ``copy_min_chars`` characters).
- ``placeholder``: the row's protected spans (printf and brace formats, tags, entities, URLs, paths,
  options, line breaks: ``s2s_core.text.spans``) differ between source and translation as multisets:
  one dropped, duplicated, altered or invented. Checked on the whole row, after its pieces are joined.

The ratio, repetition and copy defaults were checked against the human references of the bible-es-en
dev set (``bench/flags.py --calibrate``): they flag at most 0.5 % of them. A rule on the attention
(a source word with little attention mass: a possible omission) was removed: on the converged model
it marked rows no worse than the others at any threshold (precision at or below chance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace

from s2s_core.text.spans import DEFAULT_RULES, SpanRules, spans_match

LOW_CONFIDENCE, LENGTH_RATIO, REPETITION, COPY = "low_confidence", "length_ratio", "repetition", "copy"
PLACEHOLDER = "placeholder"
FLAGS = (LOW_CONFIDENCE, LENGTH_RATIO, REPETITION, COPY, PLACEHOLDER)  # canonical order of a row's flags
WORD_START = "▁"  # SentencePiece's word-boundary mark


@dataclass(frozen=True)
class FlagThresholds:
    """Where each rule fires; see the module docstring for what each value means."""

    min_mean_log_prob: float = -1.25
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    ratio_min_tokens: int = 6
    repeat_max_n: int = 4
    repeat_times: int = 3
    copy_similarity: float = 0.8
    copy_min_chars: int = 20


DEFAULT_THRESHOLDS = FlagThresholds()


def thresholds_from(record: dict | None) -> FlagThresholds:
    """The defaults with a model package's own values (its ``flag_thresholds``) where it has them."""
    known = {f.name for f in fields(FlagThresholds)}
    return replace(DEFAULT_THRESHOLDS, **{k: v for k, v in (record or {}).items() if k in known})


def length_ratio_out_of_range(n_src: int, n_tgt: int, th: FlagThresholds = DEFAULT_THRESHOLDS) -> bool:
    if n_src < th.ratio_min_tokens:
        return False
    ratio = n_tgt / n_src
    return not th.min_ratio <= ratio <= th.max_ratio


def has_loop(tokens: Sequence[int], max_n: int = 4, times: int = 3) -> bool:
    """Whether some n-gram (1 ≤ n ≤ ``max_n``) occurs ``times`` times in a row."""
    for n in range(1, max_n + 1):
        span = n * times
        for start in range(len(tokens) - span + 1):
            gram = tokens[start:start + n]
            if all(tokens[start + i * n:start + (i + 1) * n] == gram for i in range(1, times)):
                return True
    return False


def is_repetition(tokens: Sequence[int], finished: bool, th: FlagThresholds = DEFAULT_THRESHOLDS) -> bool:
    return not finished or has_loop(list(tokens), th.repeat_max_n, th.repeat_times)


# Attention coverage: no flag reads it any more (see the module docstring); bench/flags.py measures it.
def word_coverage(pieces: Sequence[str], coverage: Sequence[float]) -> list[tuple[str, float]]:
    """(word, attention mass) per source word: a word's subwords summed (pieces start words with ▁)."""
    words: list[tuple[str, float]] = []
    for piece, mass in zip(pieces, coverage, strict=False):  # coverage may add the EOS position
        if piece.startswith(WORD_START) or not words:
            words.append((piece.removeprefix(WORD_START), float(mass)))
        else:
            word, total = words[-1]
            words[-1] = (word + piece, total + float(mass))
    return words


def min_word_coverage(pieces: Sequence[str], coverage: Sequence[float]) -> float | None:
    """The least attention mass of a source word with a letter or digit; None if there is none."""
    masses = [m for w, m in word_coverage(pieces, coverage) if any(c.isalnum() for c in w)]
    return min(masses, default=None)


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _trigrams(text: str) -> Counter[str]:
    padded = f"  {text} "
    return Counter(padded[i:i + 3] for i in range(len(padded) - 2))


def similarity(a: str, b: str) -> float:
    """Dice coefficient of the character trigrams of two case-folded, whitespace-collapsed texts."""
    x, y = _trigrams(_normal(a)), _trigrams(_normal(b))
    total = sum(x.values()) + sum(y.values())
    return 2 * sum((x & y).values()) / total if total else 1.0


def is_copy(src_text: str, out_text: str, th: FlagThresholds = DEFAULT_THRESHOLDS) -> bool:
    if len(_normal(src_text)) < th.copy_min_chars:
        return False
    return similarity(src_text, out_text) >= th.copy_similarity


def piece_flags(src_tokens: Sequence[int], tokens: Sequence[int], finished: bool, src_text: str,
                out_text: str, th: FlagThresholds = DEFAULT_THRESHOLDS, mean_log_prob: float | None = None
                ) -> tuple[str, ...]:
    """The flags of one translated piece, in ``FLAGS`` order (empty when none fires).

    ``mean_log_prob``: the model's log-prob per output token (EOS included); None skips
    ``low_confidence``.
    """
    fired = set()
    if mean_log_prob is not None and mean_log_prob < th.min_mean_log_prob:
        fired.add(LOW_CONFIDENCE)
    if length_ratio_out_of_range(len(src_tokens), len(tokens), th):
        fired.add(LENGTH_RATIO)
    if is_repetition(tokens, finished, th):
        fired.add(REPETITION)
    if is_copy(src_text, out_text, th):
        fired.add(COPY)
    return tuple(f for f in FLAGS if f in fired)


def with_placeholder_check(flags: Sequence[str], src_text: str, out_text: str,
                           rules: SpanRules = DEFAULT_RULES) -> tuple[str, ...]:
    """A row's flags plus ``placeholder`` where its translation's spans (``rules``) are not the source's."""
    if spans_match(src_text, out_text, rules):
        return tuple(flags)
    return union([flags, (PLACEHOLDER,)])


def union(flag_sets: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The flags of any of ``flag_sets`` (a row's pieces), in ``FLAGS`` order."""
    fired = {f for flags in flag_sets for f in flags}
    return tuple(f for f in FLAGS if f in fired)


def flag_counts(rows: Iterable[Sequence[str]]) -> dict[str, int]:
    """Rows carrying each flag, for every flag in ``FLAGS`` (0 included), and rows with ``any``."""
    counts = dict.fromkeys(FLAGS, 0) | {"any": 0}
    for flags in rows:
        for f in flags:
            counts[f] = counts.get(f, 0) + 1
        counts["any"] += bool(flags)
    return counts
