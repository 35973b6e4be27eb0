"""Translate one chunk: read its rows, translate the text column, write the part, commit it.

The model is whatever ``translate`` callable the caller hands in (the task layer wraps a loaded
``Translator``), so this package never imports torch or the inference code.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from s2s_core.corpus import commit
from s2s_core.corpus.columns import BINARY, kind, text_values
from s2s_core.corpus.files import Chunk, read_chunk
from s2s_core.corpus.memory import KEY, KEY_TYPE, TranslationMemory, is_remembered, text_key
from s2s_core.corpus.parts import ADDED_TYPES, FLAGS_TYPE, NBEST_TYPE
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
    flags: Sequence[str]  # quality flags (``s2s_core.inference.flags``); empty for a clean row


def output_columns(out: Sequence[TranslatedRow]) -> dict[str, pa.Array]:
    """The columns a part adds to its rows: translation, score, status, segments, flags (and nbest)."""
    columns = {"translation": pa.array([t.text for t in out], ADDED_TYPES["translation"]),
               "score": pa.array([t.score for t in out], ADDED_TYPES["score"]),
               "status": pa.array([t.status for t in out], ADDED_TYPES["status"]),
               "segments": pa.array([t.segments for t in out], ADDED_TYPES["segments"]),
               "flags": pa.array([list(t.flags) for t in out], FLAGS_TYPE)}
    if out and out[0].nbest is not None:
        columns["nbest"] = pa.array([[{"text": x, "score": s} for x, s in t.nbest] for t in out],
                                    NBEST_TYPE)
    return columns


def flag_counts(flags: pa.Array) -> dict[str, int]:
    """Rows per quality flag in a ``flags`` column (flags no row carries are left out)."""
    return dict(sorted(Counter(f for row in flags.to_pylist() for f in row or ()).items()))


def placeholder_counts(texts: Sequence[str | None], statuses: Sequence[str],
                       flags: Sequence[Sequence[str] | None],
                       has_spans: Callable[[str], bool]) -> dict[str, int]:
    """The placeholder exact-match counts of translated rows, as their per-row check saw them.

    ``rows``: sources holding a protected span (``has_spans``: by the translator's rules); ``exact``:
    those translated (``ok``/``truncated``) without a ``placeholder`` flag (a failed row holds no
    span); ``invented``: sources without spans flagged all the same. ``placeholder_rate`` of the sums
    is the figure reports give.
    """
    rows = exact = invented = 0
    for text, status, row_flags in zip(texts, statuses, flags, strict=True):
        flagged = "placeholder" in (row_flags or ())
        if text and has_spans(text):
            rows += 1
            exact += status in ("ok", "truncated") and not flagged
        elif flagged:
            invented += 1
    return {"rows": rows, "exact": exact, "invented": invented}


def placeholder_rate(counts: Mapping[str, int]) -> dict:
    """The placeholder exact-match rate of summed ``placeholder_counts``: ``rows_with_spans``, ``exact``,
    ``rate`` (exact / rows_with_spans; None without any) and ``invented``."""
    rows, exact = counts.get("rows", 0), counts.get("exact", 0)
    return {"rows_with_spans": rows, "exact": exact, "rate": round(exact / rows, 4) if rows else None,
            "invented": counts.get("invented", 0)}


# Texts of a chunk (None for nulls) → one translated row per text, in order.
Translate = Callable[[list[str | None]], Sequence[TranslatedRow]]


def translate_chunk(spec: JobSpec, plan_fingerprint: str, chunk: Chunk,
                    load_translate: Callable[[], Translate], retry_failed: bool = False,
                    memory: TranslationMemory | None = None,
                    has_spans: Callable[[str], bool] | None = None) -> dict:
    """Translate, write and commit one chunk; returns its marker record (``skipped`` if committed;
    ``commit_seconds``: how long the commit took).

    ``load_translate`` is called only when the chunk still needs translating, so a re-run does not
    load a model just to skip committed chunks; its time is recorded apart as ``load``. With
    ``retry_failed`` a committed chunk's ``failed`` rows (out of memory alone) are translated again.
    With a ``memory``, rows it holds are taken from it and only the others are translated
    (``translate_texts``); the marker counts them under ``memory``. With ``has_spans`` (whether a
    source holds protected spans) the marker counts the placeholder check under ``spans``.
    """
    if commit.is_committed(spec.output, chunk.id):
        marker = commit.read_markers(spec.output, [chunk.id])[chunk.id]
        if retry_failed and marker["statuses"].get("failed"):
            return retry_failed_rows(spec, chunk, marker, load_translate, memory, has_spans)
        return {**marker, "skipped": True}
    started = time.perf_counter()
    table = read_chunk(spec.input, chunk)
    read_done = time.perf_counter()
    texts = chunk_texts(spec, chunk, table.column(spec.text_column))
    done = translate_texts(texts, load_translate, memory)
    translate_done = time.perf_counter()
    for name, column in done.columns.items():
        table = table.append_column(name, column)
    if spec.output_format != "parquet" and kind(table.schema.field(spec.text_column).type) == BINARY:
        # A text format holds text: the rows' texts as they were decoded and translated, not bytes.
        index = table.column_names.index(spec.text_column)
        table = table.set_column(index, spec.text_column, pa.array(texts, pa.string()))
    part_bytes = commit.write_part(spec.output, chunk.id, table, spec.output_format)
    finished = time.perf_counter()
    record = {"chunk": chunk.id, "file": chunk.path, "start": chunk.start, "stop": chunk.stop,
              "rows_in": chunk.rows, "rows_out": table.num_rows,
              "part": commit.part_name(chunk.id, spec.output_format),
              "part_bytes": part_bytes, "plan": plan_fingerprint,
              "statuses": done.statuses, "source_tokens": done.source_tokens,
              "target_tokens": done.target_tokens, "flags": flag_counts(done.columns["flags"]),
              "seconds": {"read": round(read_done - started, 4), "load": round(done.seconds["load"], 4),
                          "translate": round(done.seconds["translate"], 4),
                          "memory": round(done.seconds["memory"], 4),
                          "write": round(finished - translate_done, 4),
                          "total": round(finished - started, 4)},
              "host": socket.gethostname(), "pid": os.getpid(),
              "committed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if done.memory is not None:
        record["memory"] = done.memory
    if has_spans is not None:
        record["spans"] = placeholder_counts(texts, done.columns["status"].to_pylist(),
                                             done.columns["flags"].to_pylist(), has_spans)
    committed = commit.commit(spec.output, chunk.id, record)
    # The commit's own time is not in the marker (written by it): the caller's progress counts it.
    return {**record, "skipped": not committed, "commit_seconds": round(time.perf_counter() - finished, 4)}


def chunk_texts(spec: JobSpec, chunk: Chunk, column: pa.ChunkedArray | pa.Array,
                rows: Sequence[int] | None = None) -> list[str | None]:
    """The texts of a chunk's text column (``rows``: which rows of the chunk ``column`` holds), in
    any string encoding; undecodable bytes are an error naming the file and row."""
    def where(i: int) -> str:
        row = chunk.start + (rows[i] if rows is not None else i)
        return f"{spec.input.describe(chunk.path)} row {row}"

    return text_values(column, spec.text_encoding, where)


@dataclass(frozen=True)
class Translated:
    """The output columns of a list of texts (one row per text), their token totals and costs."""

    columns: dict[str, pa.Array]
    source_tokens: int
    target_tokens: int
    seconds: dict[str, float]  # load, translate, memory (lookups and writes)
    memory: dict[str, int] | None  # hits, misses (rows), written (entries); None without a memory

    @property
    def statuses(self) -> dict[str, int]:
        return dict(Counter(self.columns["status"].to_pylist()))


_TOKENS = ("source_tokens", "target_tokens")


def translate_texts(texts: list[str | None], load_translate: Callable[[], Translate],
                    memory: TranslationMemory | None = None) -> Translated:
    """Translate ``texts``, taking from ``memory`` what it holds; new results are added to it.

    Each distinct text the memory lacks is translated once (nulls and blanks too: the translator
    answers them without the model; they are not remembered), and the model is loaded only if
    there is any. A row from the memory equals what the translator gave when it was stored
    (hypotheses do not depend on batch composition, and the namespace pins everything else).
    ``failed`` rows are not remembered: they must be retried. The new entries are written before
    the caller writes the part and commits: once a chunk is committed, its sentences are in the
    memory (written after the commit, a crash in between would lose them for every later run),
    and a crash before the commit leaves entries that the retry of the chunk simply reuses.
    """
    started = time.perf_counter()
    keys = [text_key(t) if is_remembered(t) else None for t in texts]
    found = memory.lookup(k for k in keys if k is not None) if memory is not None else None
    hit_at = {k: i for i, k in enumerate(found.column(KEY).to_pylist())} if found is not None else {}
    missing: dict[str | None, int] = {}  # distinct texts to translate → their row in ``fresh``
    for text, key in zip(texts, keys, strict=True):
        if key is None or key not in hit_at:
            missing.setdefault(text, len(missing))
    looked_up = time.perf_counter()
    translate = load_translate() if missing else None  # all rows remembered: no model needed
    loaded = time.perf_counter()
    out = translate(list(missing)) if translate else []
    if len(out) != len(missing):  # the Translator guarantees this; a part must never be short
        raise RuntimeError(f"{len(missing)} texts to translate, {len(out)} translations")
    translated = time.perf_counter()
    fresh = pa.table({**output_columns(out),
                      "source_tokens": pa.array([len(t.src_tokens) for t in out], pa.int64()),
                      "target_tokens": pa.array([len(t.tokens) for t in out], pa.int64())})
    values = _rows_in_order(texts, keys, missing, hit_at, fresh, found)
    written = _remember(memory, list(missing), fresh) if memory is not None else 0
    finished = time.perf_counter()
    stats = None
    if memory is not None:
        hits = sum(k is not None and k in hit_at for k in keys)
        stats = {"hits": hits, "misses": sum(k is not None for k in keys) - hits, "written": written}
    columns = {name: values.column(name).combine_chunks() for name in values.column_names
               if name not in _TOKENS}
    return Translated(columns, _total(values, "source_tokens"), _total(values, "target_tokens"),
                      {"load": loaded - looked_up, "translate": translated - loaded,
                       "memory": (looked_up - started) + (finished - translated)}, stats)


def _rows_in_order(texts: list[str | None], keys: list[bytes | None], missing: dict[str | None, int],
                   hit_at: dict[bytes, int], fresh: pa.Table, found: pa.Table | None) -> pa.Table:
    """One row of values per text: its fresh translation or its memory entry."""
    if found is None:
        remembered = fresh.slice(0, 0)
    else:
        remembered = found.drop_columns([KEY])
        if missing:  # both kinds: the memory's columns must be the ones a fresh translation gives
            if set(remembered.column_names) != set(fresh.column_names):
                raise RuntimeError(f"translation memory entries have columns {remembered.column_names}, "
                                   f"a translation gives {fresh.column_names}: its namespace should "
                                   "differ (delete the namespace directory)")
            remembered = remembered.select(fresh.column_names).cast(fresh.schema)
        else:
            fresh = remembered.slice(0, 0)
    combined = pa.concat_tables([fresh, remembered])
    indices = [missing[t] if k is None or k not in hit_at else len(missing) + hit_at[k]
               for t, k in zip(texts, keys, strict=True)]
    return combined.take(pa.array(indices, pa.int64()))


def _remember(memory: TranslationMemory, texts: list[str | None], fresh: pa.Table) -> int:
    """Add the fresh translations of remembered texts to the memory, except ``failed`` ones."""
    statuses = fresh.column("status").to_pylist()
    keep = [i for i, (text, status) in enumerate(zip(texts, statuses, strict=True))
            if is_remembered(text) and status != "failed"]
    if not keep:
        return 0
    entries = fresh.take(pa.array(keep, pa.int64()))
    keys = pa.array([text_key(texts[i] or "") for i in keep], KEY_TYPE)
    return memory.write(entries.add_column(0, KEY, keys))


def _total(table: pa.Table, column: str) -> int:
    return int(pc.sum(table.column(column)).as_py() or 0)


def retry_failed_rows(spec: JobSpec, chunk: Chunk, marker: dict, load_translate: Callable[[], Translate],
                      memory: TranslationMemory | None = None,
                      has_spans: Callable[[str], bool] | None = None) -> dict:
    """Translate a committed chunk's ``failed`` rows again and re-commit it; returns the new marker.

    The part is replaced in one atomic write (every other row unchanged), so readers see the old or
    the new rows, never a mix; the marker is rewritten after it. The part's own status column is
    authoritative (verification counts statuses from parts), so a crash between the two writes
    leaves at most a marker that overcounts failures, and the next retry fixes that too.
    """
    started = time.perf_counter()
    table = commit.read_part(spec.output, chunk.id, spec.output_format)
    statuses = table.column("status").to_pylist()
    failed = [i for i, s in enumerate(statuses) if s == "failed"]
    # Failed rows are never in the memory, but another run may have translated the same text since.
    texts = chunk_texts(spec, chunk, table.column(spec.text_column).take(failed), rows=failed)
    done = translate_texts(texts, load_translate, memory)
    for name, column in done.columns.items() if failed else ():
        values = table.column(name).to_pylist()
        for i, value in zip(failed, column.to_pylist(), strict=True):
            values[i] = value
        table = table.set_column(table.column_names.index(name), name, pa.array(values, column.type))
    statuses = table.column("status").to_pylist()
    part_bytes = commit.write_part(spec.output, chunk.id, table, spec.output_format)
    still = done.statuses.get("failed", 0)
    record = {**marker, "part_bytes": part_bytes, "statuses": dict(Counter(statuses)),
              "flags": flag_counts(table.column("flags").combine_chunks()),  # retried rows may be flagged
              "target_tokens": marker["target_tokens"] + done.target_tokens,
              "retried": {"rows": len(failed), "still_failed": still,
                          "seconds": round(time.perf_counter() - started, 4),
                          "at": datetime.now(UTC).isoformat(timespec="seconds"),
                          **({"memory": done.memory} if done.memory is not None else {})}}
    if has_spans is not None:  # the retried rows' checks count now
        every_text = chunk_texts(spec, chunk, table.column(spec.text_column))
        record["spans"] = placeholder_counts(every_text, statuses, table.column("flags").to_pylist(),
                                             has_spans)
    commit.recommit(spec.output, chunk.id, record)
    return {**record, "skipped": False}
