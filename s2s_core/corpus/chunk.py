"""Translate one chunk: read its rows, translate the text column, write the part, commit it.

The model is whatever ``translate`` callable the caller hands in (the task layer wraps a loaded
``Translator``), so this package never imports torch or the inference code.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa

from s2s_core.corpus import commit
from s2s_core.corpus.files import Chunk, read_chunk
from s2s_core.corpus.plan import JobSpec


class TranslatedRow(Protocol):
    """The fields of one translated row that a part and its marker record (a ``Translation``)."""

    text: str
    score: float
    status: str
    src_tokens: Sequence[int]
    tokens: Sequence[int]
    segments: int
    nbest: Sequence[tuple[str, float]] | None  # a list on every row with n-best decoding, else None


NBEST_TYPE = pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())]))


def output_columns(out: Sequence[TranslatedRow]) -> dict[str, pa.Array]:
    """The columns a part adds to its rows: translation, score, status, segments (and nbest)."""
    columns = {"translation": pa.array([t.text for t in out], pa.string()),
               "score": pa.array([t.score for t in out], pa.float64()),
               "status": pa.array([t.status for t in out], pa.string()),
               "segments": pa.array([t.segments for t in out], pa.int32())}
    if out and out[0].nbest is not None:
        columns["nbest"] = pa.array([[{"text": x, "score": s} for x, s in t.nbest] for t in out],
                                    NBEST_TYPE)
    return columns


# Texts of a chunk (None for nulls) → one translated row per text, in order.
Translate = Callable[[list[str | None]], Sequence[TranslatedRow]]


def translate_chunk(spec: JobSpec, plan_fingerprint: str, chunk: Chunk,
                    load_translate: Callable[[], Translate], retry_failed: bool = False) -> dict:
    """Translate, write and commit one chunk; returns its marker record (``skipped`` if committed).

    ``load_translate`` is called only when the chunk still needs translating, so a re-run does not
    load a model just to skip committed chunks; its time is recorded apart as ``load``. With
    ``retry_failed`` a committed chunk's ``failed`` rows (out of memory alone) are translated again.
    """
    if commit.is_committed(spec.output, chunk.id):
        marker = commit.read_markers(spec.output, [chunk.id])[chunk.id]
        if retry_failed and marker["statuses"].get("failed"):
            return retry_failed_rows(spec, chunk, marker, load_translate)
        return {**marker, "skipped": True}
    started = time.perf_counter()
    table = read_chunk(spec.input, chunk)
    read_done = time.perf_counter()
    translate = load_translate()  # a cached model returns at once; the first load is timed apart
    loaded = time.perf_counter()
    out = translate(table.column(spec.text_column).to_pylist())
    translate_done = time.perf_counter()
    if len(out) != table.num_rows:  # the Translator guarantees this; a part must never be short
        raise RuntimeError(f"chunk {chunk.id}: {table.num_rows} rows in, {len(out)} out")
    for name, column in output_columns(out).items():
        table = table.append_column(name, column)
    part_bytes = commit.write_part(spec.output, chunk.id, table)
    finished = time.perf_counter()
    record = {"chunk": chunk.id, "file": chunk.path, "start": chunk.start, "stop": chunk.stop,
              "rows_in": chunk.rows, "rows_out": table.num_rows, "part": commit.part_name(chunk.id),
              "part_bytes": part_bytes, "plan": plan_fingerprint,
              "statuses": dict(Counter(t.status for t in out)),
              "source_tokens": sum(len(t.src_tokens) for t in out),
              "target_tokens": sum(len(t.tokens) for t in out),
              "seconds": {"read": round(read_done - started, 4), "load": round(loaded - read_done, 4),
                          "translate": round(translate_done - loaded, 4),
                          "write": round(finished - translate_done, 4),
                          "total": round(finished - started, 4)},
              "host": socket.gethostname(), "pid": os.getpid(),
              "committed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    committed = commit.commit(spec.output, chunk.id, record)
    return {**record, "skipped": not committed}


def retry_failed_rows(spec: JobSpec, chunk: Chunk, marker: dict, load_translate: Callable[[], Translate]
                      ) -> dict:
    """Translate a committed chunk's ``failed`` rows again and re-commit it; returns the new marker.

    The part is replaced in one atomic write (every other row unchanged), so readers see the old or
    the new rows, never a mix; the marker is rewritten after it. The part's own status column is
    authoritative (verification counts statuses from parts), so a crash between the two writes
    leaves at most a marker that overcounts failures, and the next retry fixes that too.
    """
    started = time.perf_counter()
    table = commit.read_part(spec.output, chunk.id)
    statuses = table.column("status").to_pylist()
    failed = [i for i, s in enumerate(statuses) if s == "failed"]
    out = load_translate()(table.column(spec.text_column).take(failed).to_pylist()) if failed else []
    for name, column in output_columns(out).items() if out else ():
        values = table.column(name).to_pylist()
        for i, value in zip(failed, column.to_pylist(), strict=True):
            values[i] = value
        table = table.set_column(table.column_names.index(name), name, pa.array(values, column.type))
    statuses = table.column("status").to_pylist()
    part_bytes = commit.write_part(spec.output, chunk.id, table)
    still = sum(t.status == "failed" for t in out)
    record = {**marker, "part_bytes": part_bytes, "statuses": dict(Counter(statuses)),
              "target_tokens": marker["target_tokens"] + sum(len(t.tokens) for t in out),
              "retried": {"rows": len(failed), "still_failed": still,
                          "seconds": round(time.perf_counter() - started, 4),
                          "at": datetime.now(UTC).isoformat(timespec="seconds")}}
    commit.recommit(spec.output, chunk.id, record)
    return {**record, "skipped": False}
