"""Plain-text translation: one output line per input line, in order, a window of lines at a time.

Memory holds one window (a few thousand lines), whatever the length of the input. Lines end at
``\\n`` only (``\\r\\n`` is accepted; U+2028 and other separators that ``str.splitlines`` knows are
text, so the output stays aligned with the input line for line). An empty input line gives an
empty output line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import BinaryIO

from s2s_core.errors import InputDataError
from s2s_core.inference.translator import DecodeConfig, Translation, Translator

WINDOW = 2000  # lines translated together: full batches, and repeats within it searched once
NBEST_SEPARATOR = " ||| "


def read_lines(stream: BinaryIO, name: str = "<stdin>") -> Iterator[str]:
    """Decode ``stream`` line by line as strict UTF-8 (a leading BOM dropped), without line ends."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise InputDataError(f"{name}: line {number} is not valid UTF-8 at byte offset {err.start} "
                                 f"(0x{raw[err.start:err.end].hex()})") from None
        yield line.removesuffix("\n").removesuffix("\r")


def translate_stream(translator: Translator, lines: Iterable[str], config: DecodeConfig,
                     window: int = WINDOW, on_window: Callable[[int], None] | None = None
                     ) -> Iterator[Translation]:
    """Translate ``lines`` a window at a time, yielding results in input order.

    Hypotheses do not depend on batch composition, so windowing changes nothing but memory.
    ``on_window(n)`` is called after each window with its number of lines.
    """
    lines = iter(lines)
    while batch := list(islice(lines, window)):
        yield from translator.translate(batch, config)
        if on_window:
            on_window(len(batch))


def one_line(text: str) -> str:
    """``text`` on one line: a line break in a translation would shift every later line."""
    return text.replace("\r", " ").replace("\n", " ")


def nbest_lines(index: int, translation: Translation) -> list[str]:
    """The n-best entries of input line ``index`` (0-based): ``index ||| hypothesis ||| score``.

    The format of Moses and Marian n-best lists, with the score a mean token log-probability; an
    empty or failed line gets one entry with an empty hypothesis.
    """
    entries = translation.nbest or [(translation.text, translation.score)]
    return [NBEST_SEPARATOR.join((str(index), one_line(text), f"{score:.4f}")) for text, score in entries]
