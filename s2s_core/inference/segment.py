"""Cut a row into the pieces a sentence-level model translates, and put their translations back.

A row with several lines is cut at its line breaks (software messages span lines; the model was
trained on single lines), and a line over the model's length limit at sentence boundaries. The
sentences come from sentencex (Wikimedia's rule-based segmenter: about 300 languages through
fallback chains, unknown codes fall back to English; it prefers not splitting to splitting wrongly,
and its pieces concatenate back to the input exactly). Pieces are spans of the row, so the
whitespace and line breaks around and between them are kept when the translations are joined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sentencex

DEFAULT_LANGUAGE = "en"
_LINE = re.compile(r"[^\n]+")

Span = tuple[int, int]


@dataclass(frozen=True)
class Segmented:
    """A row and the spans of it that are translated; what lies between the spans is kept as is."""

    text: str
    spans: tuple[Span, ...]

    @property
    def pieces(self) -> list[str]:
        return [self.text[start:stop] for start, stop in self.spans]

    def join(self, translations: Sequence[str]) -> str:
        """The row with each piece replaced by its translation (one translation per span)."""
        if len(translations) != len(self.spans):
            raise ValueError(f"{len(self.spans)} pieces but {len(translations)} translations")
        if len(self.spans) == 1 and self.spans[0] == (0, len(self.text)):
            return translations[0]
        out, position = [], 0
        for (start, stop), translation in zip(self.spans, translations, strict=True):
            out += [self.text[position:start], translation]
            position = stop
        out.append(self.text[position:])
        return "".join(out)


def _stripped(text: str, start: int, stop: int) -> Span | None:
    """``(start, stop)`` narrowed to exclude surrounding whitespace; None if it is all whitespace."""
    piece = text[start:stop]
    core = piece.strip()
    if not core:
        return None
    offset = start + (len(piece) - len(piece.lstrip()))
    return offset, offset + len(core)


def split_lines(text: str) -> Segmented:
    """One piece per non-blank line; a row with at most one such line is one piece, whole, as given."""
    if "\n" not in text:
        return Segmented(text, ((0, len(text)),) if text.strip() else ())
    spans = tuple(span for m in _LINE.finditer(text) if (span := _stripped(text, m.start(), m.end())))
    if len(spans) <= 1:
        return Segmented(text, ((0, len(text)),) if spans else ())
    return Segmented(text, spans)


class SentenceSplitter:
    """Splits chosen pieces of a row at sentence boundaries, for one source language."""

    def __init__(self, language: str = DEFAULT_LANGUAGE):
        self.language = language

    def sentences(self, text: str, start: int, stop: int) -> list[Span]:
        """The sentences of ``text[start:stop]`` as spans of ``text`` (the span itself if it has one)."""
        parts = list(sentencex.segment(self.language, text[start:stop]))
        if "".join(parts) != text[start:stop]:  # never lose text if a release ever changes this
            return [(start, stop)]
        spans, position = [], start
        for part in parts:
            if span := _stripped(text, position, position + len(part)):
                spans.append(span)
            position += len(part)
        return spans or [(start, stop)]

    def split(self, row: Segmented, indices: Iterable[int]) -> Segmented:
        """``row`` with the pieces at ``indices`` cut into sentences."""
        chosen = set(indices)
        spans: list[Span] = []
        for i, (start, stop) in enumerate(row.spans):
            spans += self.sentences(row.text, start, stop) if i in chosen else [(start, stop)]
        return Segmented(row.text, tuple(spans))
