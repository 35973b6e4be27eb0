"""Verify a finished corpus translation chunk by chunk, then write ``manifest.json`` and the chunk index.

Checks (memory bounded: chunks are inspected a window at a time on a thread pool, ids are streamed
and their 8-byte hashes bounded in ``idcheck``):
every planned chunk is committed and no unplanned one is; every committed part is readable and holds
exactly its chunk's rows (statuses are counted from the parts themselves, which are authoritative);
the output ids, read part by part, equal the input ids row for row; the output ids are unique.

A committed part that is missing, unreadable or short is damage, not a reason to fail forever: its
marker is withdrawn and ``DamagedChunksError`` names the chunks, which the caller translates again.
``manifest.json`` holds totals and names ``_chunks.parquet``, one row per chunk; it is written only
when all checks pass, so its presence marks a complete, verified output.
"""

from __future__ import annotations

import io
import json
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core.corpus import commit
from s2s_core.corpus.commit import OUTPUT_COLUMNS
from s2s_core.corpus.files import Chunk, iter_column
from s2s_core.corpus.idcheck import DEFAULT_MAX_IDS_IN_MEMORY, check_ids
from s2s_core.corpus.plan import JobPlan, JobSpec
from s2s_core.storage import Store

MANIFEST = "manifest.json"
CHUNK_INDEX = "_chunks.parquet"  # leading underscore: not a data file for Parquet readers (or for us)
MANIFEST_FORMAT = 2
DEFAULT_WORKERS = 16  # concurrent footer/marker reads: object-store latency, not CPU, is the limit
SECONDS = ("read", "load", "translate", "write", "total")
INDEX_SCHEMA = pa.schema([("chunk", pa.string()), ("part", pa.string()), ("file", pa.int32()),
                          ("start", pa.int64()), ("stop", pa.int64()), ("rows_in", pa.int64()),
                          ("rows_out", pa.int64()), ("statuses", pa.map_(pa.string(), pa.int64())),
                          ("source_tokens", pa.int64()), ("target_tokens", pa.int64()),
                          ("seconds", pa.struct([(k, pa.float64()) for k in SECONDS])),
                          ("host", pa.string()), ("pid", pa.int64())])

T = TypeVar("T")
R = TypeVar("R")


class VerificationError(RuntimeError):
    """The output does not hold every input row exactly once."""


class DamagedChunksError(VerificationError):
    """Committed parts that are missing, unreadable or short; their markers have been withdrawn."""

    def __init__(self, damage: dict[str, str]):
        self.chunk_ids = sorted(damage)
        shown = "; ".join(f"chunk {c}: {damage[c]}" for c in self.chunk_ids[:5])
        super().__init__(f"{len(damage)} committed chunk(s) damaged and un-committed, to be translated "
                         f"again: {shown}")


@dataclass
class _Totals:
    """What the manifest sums over chunks."""

    chunks: int = 0
    rows_out: int = 0
    source_tokens: int = 0
    target_tokens: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)

    def add(self, row: dict) -> None:
        self.chunks += 1
        self.rows_out += row["rows_out"]
        self.source_tokens += row["source_tokens"]
        self.target_tokens += row["target_tokens"]
        self.statuses.update(dict(row["statuses"]))
        self.seconds.update(row["seconds"])


def verify_output(spec: JobSpec, plan: JobPlan, this_run: dict | None = None,
                  max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY, workers: int = DEFAULT_WORKERS) -> dict:
    """Verify the output against the plan and write the manifest and chunk index.

    Raises ``DamagedChunksError`` (after un-committing them) for damaged parts, ``VerificationError``
    for anything else that is wrong.
    """
    _check_committed(spec, plan)
    totals, index = _inspect_chunks(spec.output, plan, workers)
    ids = _check_ids(spec, plan, max_ids_in_memory, workers) if spec.id_column else {"column": None}
    rows = plan.corpus.rows
    if totals.rows_out != rows:  # implied by the per-chunk checks; kept explicit
        raise VerificationError(f"{rows} rows in, {totals.rows_out} rows out")
    seconds = {k: round(totals.seconds[k], 3) for k in SECONDS}
    model_seconds = seconds["translate"] or 1e-9
    spec.output.write_bytes(CHUNK_INDEX, index)
    n_best = plan.record["decode"].get("n_best", 1)
    added = [c for c in OUTPUT_COLUMNS if c != "nbest" or n_best > 1]  # nbest only with n-best search
    manifest = {
        "format": MANIFEST_FORMAT, "input": spec.input.url, "output": spec.output.url,
        "plan": plan.fingerprint, "model": plan.record["model"], "decode": plan.record["decode"],
        "numerics": plan.record.get("numerics"),
        "columns": {"text": spec.text_column, "id": spec.id_column, "added": added},
        "chunk_rows": spec.chunk_rows, "files": len(plan.corpus.files),
        "chunks": {"count": totals.chunks, "index": CHUNK_INDEX},
        "rows_in": rows, "rows_out": totals.rows_out,
        "statuses": dict(sorted(totals.statuses.items())), "failed_rows": totals.statuses.get("failed", 0),
        "ids": ids, "source_tokens": totals.source_tokens, "target_tokens": totals.target_tokens,
        "seconds": seconds,
        # Model-time throughput of one worker (sum over chunks): independent of worker count and
        # of time outside the model; this_run has the wall-clock view.
        "throughput": {"sentences_per_model_second": round(rows / model_seconds, 2),
                       "target_tokens_per_model_second": round(totals.target_tokens / model_seconds, 2)},
        "this_run": this_run or {},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    spec.output.write_json(MANIFEST, manifest)
    return manifest


def read_chunk_index(output: Store) -> list[dict]:
    """The per-chunk rows of a verified output (``_chunks.parquet``), in chunk order."""
    with output.open(CHUNK_INDEX) as f:
        rows = pq.read_table(f).to_pylist()
    return [{**r, "statuses": dict(r["statuses"])} for r in rows]


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``2 × workers`` results in flight."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def first_difference(left: Iterator[pa.Array], right: Iterator[pa.Array]) -> int | None:
    """Position of the first element where two streams of arrays differ (None if identical)."""
    pos = 0
    x: pa.Array | None = pa.array([])
    y: pa.Array | None = pa.array([])
    while True:
        while x is not None and len(x) == 0:
            x = next(left, None)
        while y is not None and len(y) == 0:
            y = next(right, None)
        if x is None or y is None:
            return None if x is None and y is None else pos
        n = min(len(x), len(y))
        a, b = x.slice(0, n), y.slice(0, n)
        if not a.equals(b):
            return pos + next(i for i, (u, v) in enumerate(zip(a.to_pylist(), b.to_pylist(), strict=True))
                              if u != v)
        x, y, pos = x.slice(n), y.slice(n), pos + n


def _check_committed(spec: JobSpec, plan: JobPlan) -> None:
    """Every planned chunk has a marker and no other chunk has one (one fresh listing)."""
    planned = {c.id for c in plan.chunks}
    committed = commit.committed_ids(spec.output)
    missing = sorted(planned - committed)
    if missing:
        raise VerificationError(f"{len(missing)} of {len(planned)} chunks are not committed "
                                f"(first {missing[0]}); run the same command again to finish them")
    unplanned = sorted(committed - planned)
    if unplanned:
        raise VerificationError(f"{spec.output.url_of(commit.DONE_DIR)} holds markers of chunks outside "
                                f"the plan ({unplanned[:3]}); the output mixes two jobs")


def _inspect_chunks(output: Store, plan: JobPlan, workers: int) -> tuple[_Totals, bytes]:
    """Each chunk's marker and part, concurrently; the totals and the chunk index (Parquet bytes)."""
    totals, damage, problems = _Totals(), {}, []
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, INDEX_SCHEMA) as writer:
        window: list[dict] = []
        for chunk, (row, damaged, problem) in zip(plan.chunks, ordered_map(
                lambda c: _inspect(output, c, plan.fingerprint), plan.chunks, workers), strict=True):
            if damaged:
                damage[chunk.id] = damaged
            elif problem:
                problems.append(problem)
            else:
                totals.add(row)
                window.append(row)
            if len(window) >= 1024:  # index rows are flushed in batches: memory stays flat
                writer.write_table(pa.Table.from_pylist(window, INDEX_SCHEMA))
                window.clear()
        if window:
            writer.write_table(pa.Table.from_pylist(window, INDEX_SCHEMA))
    if problems:
        raise VerificationError(f"{len(problems)} problem(s) in {output.url}: " + "; ".join(problems[:5]))
    if damage:
        for chunk_id in damage:
            commit.withdraw(output, chunk_id)
        raise DamagedChunksError(damage)
    return totals, buffer.getvalue()


def _inspect(output: Store, chunk: Chunk, fingerprint: str) -> tuple[dict, str | None, str | None]:
    """One chunk's index row, or why its part is damaged, or another problem (a foreign marker)."""
    try:
        marker = json.loads(output.read_bytes(commit.marker_name(chunk.id)))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}, "its marker is unreadable", None
    if marker.get("plan") != fingerprint:
        return {}, None, f"chunk {chunk.id} was committed under another plan"
    try:
        rows_out, statuses = commit.part_statuses(output, chunk.id)
    except FileNotFoundError:
        return {}, "its part is missing", None
    except pa.ArrowInvalid as err:
        return {}, f"its part is unreadable ({err})", None
    except OSError as err:
        if not _is_corrupt(err):
            raise  # a transient read error is not damage: the caller's retries handle it
        return {}, f"its part is unreadable ({err})", None
    if not rows_out == marker.get("rows_out") == chunk.rows:
        return {}, f"{chunk.rows} rows in, part holds {rows_out}, marker says {marker.get('rows_out')}", None
    row = {"chunk": chunk.id, "part": marker["part"], "file": chunk.file_index, "start": chunk.start,
           "stop": chunk.stop, "rows_in": chunk.rows, "rows_out": rows_out,
           "statuses": sorted(statuses.items()), "source_tokens": marker["source_tokens"],
           "target_tokens": marker["target_tokens"],
           "seconds": {k: float(marker["seconds"].get(k, 0.0)) for k in SECONDS},
           "host": marker.get("host"), "pid": marker.get("pid")}
    return row, None, None


def _is_corrupt(err: OSError) -> bool:
    """pyarrow reports corrupt pages as ``OSError`` ("Couldn't deserialize thrift"), not ArrowInvalid."""
    return any(s in str(err) for s in ("deserialize", "Parquet", "parquet", "page header"))


def _check_ids(spec: JobSpec, plan: JobPlan, max_ids_in_memory: int, workers: int) -> dict:
    """Output ids equal the input ids in order, and are unique."""
    column = spec.id_column

    def output_ids() -> Iterator[pa.Array]:
        return ordered_map(lambda c: commit.read_part_column(spec.output, c.id, column), plan.chunks, workers)

    where = first_difference(iter_column(spec.input, plan.corpus, column), output_ids())
    if where is not None:
        raise VerificationError(f"output row {where} does not carry input row {where}'s id: "
                                f"rows are misaligned")
    try:
        summary = check_ids(output_ids, plan.corpus.rows, f"output {spec.output.url}", max_ids_in_memory)
    except ValueError as err:
        raise VerificationError(str(err)) from None
    return {"column": column, "aligned_with_input": True, **summary}
