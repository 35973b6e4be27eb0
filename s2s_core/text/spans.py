"""Protected spans of software and web text: placeholders and markup that must come out byte-exact.

``find_spans`` finds printf formats (``%s``, ``%1$s``, ``%-5.2f``, ``%<PRIu64>``), Qt's ``%1``,
python-format (``%(name)s``), brace formats (``{0}``, ``{name}``, ``{0:>5}``), shell variables,
XML/HTML tags (each tag apart: a paired tag's inner text stays translatable), entities, URLs, e-mail
addresses, file paths, command-line options, escapes (``\\n`` as two characters) and line breaks, plus
a user's own patterns and do-not-translate terms (``SpanRules``).

``protect`` replaces each span with an indexed placeholder token (``⦅0⦆``, ``⦅1⦆`` …: one
SentencePiece user-defined symbol each) and ``restore`` puts the spans back. Text that already looks
like a placeholder is itself protected, so it comes back as it was. ``spans_match`` compares the
spans of a source and its translation as multisets (order free), for the per-row check.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# A row's first MAX_PLACEHOLDERS spans are protected; the rest stay text (still checked per row):
# every index is a symbol in the tokenizer's vocabulary, so the count is bounded.
MAX_PLACEHOLDERS = 64
# ⦅ ⦆ (U+2985/6): OpenNMT's tokenizer marks placeholders with the fullwidth ｟ ｠, but NFKC (which the
# tokenizer applies to every text) turns those into these, so these are what the vocabulary holds.
PLACEHOLDER_OPEN, PLACEHOLDER_CLOSE = "\u2985", "\u2986"


def placeholder(index: int) -> str:
    return f"{PLACEHOLDER_OPEN}{index}{PLACEHOLDER_CLOSE}"


PLACEHOLDERS = tuple(placeholder(i) for i in range(MAX_PLACEHOLDERS))
PLACEHOLDER_PATTERN = re.compile(f"{PLACEHOLDER_OPEN}(\\d+){PLACEHOLDER_CLOSE}")
# Placeholder-like text typed by a user, in either form: protected (so it comes back as typed, and
# the fullwidth form is not read as a placeholder once normalized).
_TYPED_PLACEHOLDER = f"[{PLACEHOLDER_OPEN}\\uff5f]\\d+[{PLACEHOLDER_CLOSE}\\uff60]"

_TRAILING_PUNCTUATION = ".,;:!?)]}'\""

# Kind → pattern. Where two matches overlap the longest wins, then the earliest kind listed.
PATTERNS: dict[str, str] = {
    "placeholder": _TYPED_PLACEHOLDER,  # typed by a user: protected, so restored unchanged
    "python": r"%\([^()\s]{1,64}\)[-+ #0]*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa]",
    # No space flag: "100 % sure" and "50% s" are prose, not formats.
    "printf": r"%%|%<PRI[a-zA-Z0-9]+>|%(?:[1-9]\d*\$)?[-+#0']*(?:\d+|\*(?:[1-9]\d*\$)?)?"
              r"(?:\.(?:\d+|\*(?:[1-9]\d*\$)?))?(?:hh|h|ll|l|L|q|j|z|Z|t)?[diouxXeEfFgGaAcCsSpn]",
    "qt": r"%L?[1-9]\d?(?!\d)",
    "brace": r"\{\{|\}\}|\{\}|\{[A-Za-z0-9_][A-Za-z0-9_.\[\]]*(?:![rsa])?(?::[^{}\s]{0,32})?\}",
    "shell": r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*",
    "tag": r"</?[A-Za-z][A-Za-z0-9:_.-]*(?:\s+[A-Za-z_:][-A-Za-z0-9_:.]*"
           r"(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?)*\s*/?>",
    "entity": r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#\d{1,7}|#[xX][0-9A-Fa-f]{1,6});",
    "url": r"(?:https?|ftp|file)://[^\s<>\"'\[\]{}]+|\bwww\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+[^\s<>\"']*",
    "email": r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    # An absolute path starts lowercase (/usr, /etc/x.conf): GTK menu paths (/_File/Open, /Buddies/Add)
    # are UI text that translators translate, not paths.
    "path": r"(?<![\w/\\])(?:(?:~|\.{1,2})/|/(?=[a-z0-9.]))(?:[\w.+-]+/)*[\w.+-]+/?"
            r"|\b[A-Za-z]:\\(?:[\w.+-]+\\?)+",
    "option": r"(?<![\w-])--[A-Za-z0-9][\w-]*(?:=[^\s,;)\]]+)?|(?<![\w-])-[A-Za-z](?![\w-])",
    "escape": r"\\[ntr\"'\\]",
    "newline": r"\r?\n|\t",
}
KINDS = tuple(PATTERNS)
_TRIMMED = {"url", "email", "path", "option"}  # a sentence's full stop is not part of them


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class SpanRules:
    """Which span kinds are protected, and a user's extra regular expressions and literal terms
    (e.g. a glossary of product names not to translate; matched as whole words)."""

    kinds: tuple[str, ...] = KINDS
    patterns: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown span kind(s) {unknown}; known: {', '.join(KINDS)}")
        for pattern in self.patterns:
            try:
                if re.compile(pattern).match(""):
                    raise ValueError(f"span pattern {pattern!r} matches the empty string")
            except re.error as err:
                raise ValueError(f"span pattern {pattern!r} is not a regular expression: {err}") from None
        if any(not t.strip() for t in self.terms):
            raise ValueError("a protected term is empty")

    def compiled(self) -> list[tuple[str, re.Pattern[str]]]:
        rules = [(k, re.compile(PATTERNS[k])) for k in KINDS if k in self.kinds or k == "placeholder"]
        rules += [("pattern", re.compile(p)) for p in self.patterns]
        if self.terms:
            words = "|".join(re.escape(t) for t in sorted(self.terms, key=len, reverse=True))
            rules.append(("term", re.compile(rf"(?<!\w)(?:{words})(?!\w)")))
        return rules


DEFAULT_RULES = SpanRules()


# Every built-in kind needs one of these characters (or "www."): a row without any has no span, found
# by one character-class scan (~1 µs) instead of a scan per kind (~40 µs for a 150-character verse).
_TRIGGER = re.compile(f"[%{{}}$<&/@\\\\\n\t{PLACEHOLDER_OPEN}\uff5f-]|www\\.")


@functools.cache
def _rules(rules: SpanRules) -> tuple[list[tuple[str, re.Pattern[str]]], re.Pattern[str] | None]:
    """The compiled patterns of ``rules`` and the quick test a text must pass to hold any (None with
    a user's patterns or terms: they may match anything), once per process (rules are hashable)."""
    return rules.compiled(), None if rules.patterns or rules.terms else _TRIGGER


def find_spans(text: str, rules: SpanRules = DEFAULT_RULES) -> list[Span]:
    """The protected spans of ``text``, in order, never overlapping."""
    compiled, trigger = _rules(rules)
    if trigger is not None and not trigger.search(text):  # most rows of prose
        return []
    candidates = []
    for order, (kind, pattern) in enumerate(compiled):
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind in _TRIMMED:
                while end > start + 1 and text[end - 1] in _TRAILING_PUNCTUATION:
                    end -= 1
            if end > start:
                candidates.append((start, -(end - start), order, kind, end))
    candidates.sort()
    spans, taken = [], 0
    # Leftmost first, longest at a position, then kind order; a candidate overlapping a kept one is
    # dropped (candidates are sorted by start, so only the last kept span can overlap).
    for start, _, _, kind, end in candidates:
        if start >= taken:
            spans.append(Span(kind, start, end, text[start:end]))
            taken = end
    return spans


@dataclass(frozen=True)
class Protected:
    """A text with its spans replaced by placeholders; ``spans[i]`` is what placeholder ``i`` holds."""

    text: str
    spans: tuple[str, ...]


def protect(text: str, rules: SpanRules = DEFAULT_RULES) -> Protected:
    """``text`` with its first ``MAX_PLACEHOLDERS`` spans replaced by ``｟0｠``, ``｟1｠`` …"""
    pieces, spans, at = [], [], 0
    for span in find_spans(text, rules)[:MAX_PLACEHOLDERS]:
        pieces += [text[at:span.start], placeholder(len(spans))]
        spans.append(span.text)
        at = span.end
    pieces.append(text[at:])
    return Protected("".join(pieces), tuple(spans))


def restore(translation: str, spans: Sequence[str]) -> str:
    """Put each placeholder's span back; a placeholder the source did not have is left as it is (the
    per-row check flags the row)."""
    def back(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return spans[index] if index < len(spans) else match.group(0)

    return PLACEHOLDER_PATTERN.sub(back, translation) if spans else translation


def span_counts(text: str, rules: SpanRules = DEFAULT_RULES) -> Counter[str]:
    """The multiset of a text's spans (their exact texts)."""
    return Counter(s.text for s in find_spans(text, rules))


def has_spans(text: str, rules: SpanRules = DEFAULT_RULES) -> bool:
    """Whether ``text`` holds any protected span."""
    return bool(find_spans(text, rules))


def spans_match(source: str, translation: str, rules: SpanRules = DEFAULT_RULES) -> bool:
    """Whether a translation holds exactly the source's spans, each as often (in any order)."""
    return span_counts(source, rules) == span_counts(translation, rules)
