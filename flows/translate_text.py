"""Plain-text translation for ``s2s translate`` on text: stdin or a file in, stdout or a file out.

No Prefect: a streaming loop over the core ``Translator`` (``s2s_core.inference.textfile``), one
output line per input line, written a window at a time so a pipe sees output as it comes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import fsspec

from s2s_core.corpus.chunk import placeholder_counts, placeholder_rate
from s2s_core.inference.package import load_package
from s2s_core.inference.precision import DEFAULT_PRECISION
from s2s_core.inference.textfile import WINDOW, nbest_lines, one_line, read_lines, translate_stream
from s2s_core.inference.translator import DecodeConfig
from s2s_core.registry.registry import resolve_model
from s2s_core.storage import reveal
from s2s_core.text.spans import has_spans
from tasks.progress import progress_bar

STDIO = "-"
log = logging.getLogger("s2s.translate")


@dataclass
class TextJob:
    """What to translate with which model, and how."""

    model: str
    input: str = STDIO
    output: str = STDIO
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    device: str = "auto"
    precision: str = DEFAULT_PRECISION  # fp32, bf16 or int8 (s2s_core.inference.precision)
    language: str | None = None  # None: the source language the package records
    window: int = WINDOW
    protect: bool | None = None  # None: on for a model trained with protected spans
    storage_options: dict[str, Any] = field(default_factory=dict)


def translate_text(job: TextJob) -> dict:
    """Translate ``job.input`` line by line into ``job.output``; returns a summary (counts, timing)."""
    model_url = resolve_model(job.model, job.storage_options)
    package = load_package(model_url, device=job.device, storage_options=job.storage_options)
    translator = package.translator(job.device, language=job.language, precision=job.precision,
                                    protect=job.protect)
    statuses: Counter[str] = Counter()
    flags: Counter[str] = Counter()  # quality flags are counted in the summary; the text stays plain
    spans: Counter[str] = Counter()  # the placeholder check, as the corpus manifest counts it
    lines = segments = 0
    started = time.perf_counter()
    with ExitStack() as stack:
        source = stack.enter_context(_open(job.input, "rb", job.storage_options, sys.stdin.buffer))
        sink = stack.enter_context(_open(job.output, "wb", job.storage_options, sys.stdout.buffer))
        bar = stack.enter_context(progress_bar(f"translating {_name(job.input)}", None, "lines", log))
        def window_done(lines: int) -> None:  # a pipe sees each window as soon as it is translated
            sink.flush()
            bar.advance(lines)

        spans_in = partial(has_spans, rules=translator.check_rules)  # as the per-row check finds spans
        pending: deque[str] = deque()  # the lines read and not yet translated (at most a window)

        def remembered(lines: Iterator[str]) -> Iterator[str]:
            for line in lines:
                pending.append(line)
                yield line

        results = translate_stream(translator, remembered(read_lines(source, _name(job.input))), job.decode,
                                   job.window, on_window=window_done)
        for index, translation in enumerate(results):
            spans.update(placeholder_counts([pending.popleft()], [translation.status], [translation.flags],
                                            spans_in))
            entries = (nbest_lines(index, translation) if job.decode.n_best > 1
                       else [one_line(translation.text)])
            sink.write("".join(f"{entry}\n" for entry in entries).encode("utf-8"))
            statuses[translation.status] += 1
            flags.update(translation.flags)
            segments += translation.segments
            lines = index + 1
    seconds = time.perf_counter() - started
    return {"model": model_url, "input": job.input, "output": job.output, "precision": job.precision,
            "lines": lines,
            "statuses": dict(sorted(statuses.items())), "failed_rows": statuses.get("failed", 0),
            "flags": dict(sorted(flags.items())), "placeholders": placeholder_rate(spans),
            "segments": segments, "seconds": round(seconds, 3),
            "lines_per_second": round(lines / seconds, 2) if seconds else 0.0}


def _name(url: str) -> str:
    return "<stdin>" if url == STDIO else url


class _Unclosed:
    """A standard stream as a context manager that flushes it instead of closing it."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()


def _open(url: str, mode: str, storage_options: dict[str, Any], stdio: BinaryIO) -> Any:
    """``url`` opened in binary ``mode`` through fsspec (``.gz`` and other compressions by suffix),
    or the standard stream for ``-``."""
    if url == STDIO:
        return _Unclosed(stdio)
    return fsspec.open(url, mode, compression="infer", **reveal(storage_options))
