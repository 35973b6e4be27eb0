"""Verify a finished corpus translation chunk by chunk, then write ``manifest.json`` and the chunk index.

Checks (memory bounded: chunks are inspected a window at a time on a thread pool, ids are streamed
and their 8-byte hashes bounded in ``idcheck``):
every planned chunk is committed, and every other marker is a stale one of this job (a chunk of a
file since removed or rewritten); every committed part is readable and holds exactly its chunk's rows
(statuses are counted from the parts themselves, which are authoritative); the ids of the chunks new
since the last verified run equal their input ids row for row (reused chunks were checked when they
were new, against the same file content); the output ids are unique.

A committed part that is missing, unreadable or short is damage, not a reason to fail forever: its
marker is withdrawn and ``DamagedChunksError`` names the chunks, which the caller translates again.
``manifest.json`` holds totals, what changed since the previous run and the input files with their
fingerprints, and names ``_chunks.parquet``, one row per chunk in corpus order; it is written only
when all checks pass, so its presence marks a complete, verified output. It is the source of truth:
``remove_stale`` deletes the parts and markers it does not list only after it is written.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from s2s_core.corpus import commit
from s2s_core.corpus.chunk import placeholder_rate
from s2s_core.corpus.columns import canonical_ids
from s2s_core.corpus.commit import OUTPUT_COLUMNS
from s2s_core.corpus.files import Chunk, is_chunk_id, iter_column, schema_to_text
from s2s_core.corpus.idcheck import DEFAULT_MAX_IDS_IN_MEMORY, check_ids
from s2s_core.corpus.parts import suffix as part_suffix
from s2s_core.corpus.plan import MANIFEST, MANIFEST_FORMAT, JobPlan, JobSpec, input_changes
from s2s_core.errors import InputDataError
from s2s_core.storage import Store

CHUNK_INDEX = "_chunks.parquet"  # leading underscore: not a data file for Parquet readers (or for us)
REMOTE_WORKERS = 16  # concurrent reads from an object store: its latency, not CPU, is the limit
# On a local disk reads are bound by decoding, so threads beyond a few only add memory: each thread
# that reads Parquet keeps its own allocator heap (~4 MB with pyarrow's mimalloc), 130 MB at 16.
LOCAL_WORKERS = 4
SECONDS = ("read", "load", "translate", "write", "total")
# Per-chunk counters other steps add to markers ({"hits": 3, ...}); the manifest sums each by key.
COUNTERS = ("memory", "flags", "spans")
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
    counters: dict[str, Counter] = field(default_factory=dict)  # COUNTERS present in some marker

    def add(self, row: dict, counters: dict[str, dict]) -> None:
        self.chunks += 1
        self.rows_out += row["rows_out"]
        self.source_tokens += row["source_tokens"]
        self.target_tokens += row["target_tokens"]
        self.statuses.update(dict(row["statuses"]))
        self.seconds.update(row["seconds"])
        for name, counts in counters.items():
            self.counters.setdefault(name, Counter()).update(counts)


def verify_output(spec: JobSpec, plan: JobPlan, this_run: dict | None = None,
                  max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY, workers: int | None = None) -> dict:
    """Verify the output against the plan and write the manifest and chunk index.

    Raises ``DamagedChunksError`` (after un-committing them) for damaged parts, ``VerificationError``
    for anything else that is wrong. Stale chunks are left for ``remove_stale``. ``workers``: how many
    reads run at once (default: ``read_workers``).
    """
    workers = workers or read_workers(spec.input, spec.output)
    _check_committed(spec, plan, workers)
    inspection = _Inspection(spec, plan, workers)
    try:
        ids = (_check_ids(spec, plan, inspection.stream, max_ids_in_memory, workers) if spec.id_column
               else {"column": None})
    except VerificationError:
        inspection.finish()  # damaged chunks (no ids: misaligned) are what to report, and redo
        raise
    totals, index = inspection.finish()
    rows = plan.corpus.rows
    if totals.rows_out != rows:  # implied by the per-chunk checks; kept explicit
        raise VerificationError(f"{rows} rows in, {totals.rows_out} rows out")
    seconds = {k: round(totals.seconds[k], 3) for k in SECONDS}
    model_seconds = seconds["translate"] or 1e-9
    spec.output.write_bytes(CHUNK_INDEX, index)
    n_best = plan.record["decode"].get("n_best", 1)
    added = [c for c in OUTPUT_COLUMNS if c != "nbest" or n_best > 1]  # nbest only with n-best search
    chunks_per_file = Counter(c.file_index for c in plan.chunks)
    schemas, schema_of = plan.corpus.schemas()
    manifest = {
        "format": MANIFEST_FORMAT, "run_id": uuid.uuid4().hex, "input": spec.input.url,
        "output": spec.output.url, "plan": plan.fingerprint, "model": plan.record["model"],
        "decode": plan.record["decode"], "numerics": plan.record.get("numerics"),
        "precision": plan.record.get("precision"),
        "columns": {"text": spec.text_column, "id": spec.id_column, "added": added},
        "chunk_rows": spec.chunk_rows, "files": len(plan.corpus.files),
        "chunks": {"count": totals.chunks, "index": CHUNK_INDEX},
        "rows_in": rows, "rows_out": totals.rows_out,
        "statuses": dict(sorted(totals.statuses.items())), "failed_rows": totals.statuses.get("failed", 0),
        "ids": ids, "source_tokens": totals.source_tokens, "target_tokens": totals.target_tokens,
        **{name: dict(sorted(counts.items())) for name, counts in totals.counters.items() if name != "spans"},
        **({"placeholders": placeholder_rate(spans)} if (spans := totals.counters.get("spans")) else {}),
        "seconds": seconds,
        # Model-time throughput of one worker (sum over chunks): independent of worker count and
        # of time outside the model; this_run has the wall-clock view.
        "throughput": {"sentences_per_model_second": round(rows / model_seconds, 2),
                       "target_tokens_per_model_second": round(totals.target_tokens / model_seconds, 2)},
        "changes": input_changes(plan),
        "this_run": this_run or {},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # The input files in corpus order (``file`` in the chunk index numbers them) with their
        # fingerprints, row groups and schemas (an index into ``schemas``, the distinct ones; files
        # may differ in their other columns): the next run's quick check and reuse.
        "inputs": [{**f.record(), "chunks": chunks_per_file[i], "schema": schema_of[i]}
                   for i, f in enumerate(plan.corpus.files)],
        "schemas": [schema_to_text(s) for s in schemas],
    }
    spec.output.write_json(MANIFEST, manifest)
    return manifest


def remove_stale(spec: JobSpec, plan: JobPlan, manifest: dict, workers: int | None = None) -> dict:
    """Delete the parts and markers of chunks outside the plan (files removed or rewritten since).

    Called after ``manifest`` (this run's) was written: the manifest is the source of truth, and a
    crash before or during the clean-up leaves only garbage, which the next run removes. Only names
    shaped like this output's parts and markers are touched, and only those older than this run's
    plan: a concurrent run over a newer listing of the input may be committing chunks this plan does
    not know. If another run has written a newer manifest meanwhile, nothing is removed.
    """
    workers = workers or read_workers(spec.output)
    planned = {c.id for c in plan.chunks}
    markers = {n[: -len(".json")] for n in spec.output.list_names(commit.DONE_DIR) if n.endswith(".json")}
    suffix = part_suffix(spec.output_format)
    parts = {n[len("part-"): -len(suffix)] for n in spec.output.list_names()
             if n.startswith("part-") and n.endswith(suffix)}
    unplanned = sorted(c for c in markers | parts if is_chunk_id(c) and c not in planned)
    if not unplanned:
        return {"markers": 0, "parts": 0}
    if spec.output.read_json(MANIFEST).get("run_id") != manifest["run_id"]:
        return {"markers": 0, "parts": 0, "skipped": "a newer manifest was written by another run"}
    def old(chunk_id: str) -> bool:
        return _older_than(spec.output, chunk_id, chunk_id in markers, plan.planned_at, spec.output_format)

    stale = [c for c, is_old in zip(unplanned, ordered_map(old, unplanned, workers), strict=True) if is_old]
    stale_markers, stale_parts = [c for c in stale if c in markers], [c for c in stale if c in parts]
    # Markers first: a chunk never looks committed without its part, even for a moment.
    list(ordered_map(lambda c: _remove(spec.output, commit.marker_name(c)), stale_markers, workers))
    list(ordered_map(lambda c: _remove(spec.output, commit.part_name(c, spec.output_format)), stale_parts,
                     workers))
    return {"markers": len(stale_markers), "parts": len(stale_parts)}


def remove_staging(spec: JobSpec) -> int:
    """Delete the staged Parquet copies of CSV/TSV/JSON Lines inputs once a run is verified (they
    are as large as the input; a later run that must read a file again stages it again). Returns how
    many were removed."""
    names = [n for n in spec.staging.list_names() if n.endswith(".parquet")]
    for name in names:
        _remove(spec.staging, name)
    if spec.staging.local:  # object stores have no folders to leave behind
        with suppress(OSError):  # not empty: a concurrent run staged a file meanwhile
            os.rmdir(spec.staging.path())
    return len(names)


def _older_than(output: Store, chunk_id: str, committed: bool, moment: float, fmt: str) -> bool:
    """Whether an unplanned chunk's marker (or, without one, its part) was written before ``moment``
    (a POSIX time), by the store's clock; False when the store cannot tell."""
    name = commit.marker_name(chunk_id) if committed else commit.part_name(chunk_id, fmt)
    try:
        modified = output.fs.modified(output.path(name))
    except FileNotFoundError:
        return False  # removed meanwhile
    except NotImplementedError:
        return False
    if modified.tzinfo is None:  # some filesystems give naive UTC times
        modified = modified.replace(tzinfo=UTC)
    written = modified.timestamp()
    if written == int(written):  # whole seconds (HTTP dates): the write may be up to 1 s later
        written += 1
    return written < moment


def _remove(output: Store, name: str) -> None:
    with suppress(FileNotFoundError):  # a concurrent run of the same job removed it first
        output.remove(name)


def read_chunk_index(output: Store) -> list[dict]:
    """The per-chunk rows of a verified output (``_chunks.parquet``), in corpus order."""
    with output.open(CHUNK_INDEX) as f:
        rows = pq.read_table(f).to_pylist()
    return [{**r, "statuses": dict(r["statuses"])} for r in rows]


def output_parts(output: Store) -> list[str]:
    """URLs of a verified output's parts in corpus order: read them in this order to get input order.

    Part names are content-addressed and do not sort in corpus order, and during an incremental run
    the folder also holds new parts and the previous run's stale ones: the chunk index is the list.
    """
    with output.open(CHUNK_INDEX) as f:
        names = pq.read_table(f, columns=["part"]).column(0).to_pylist()
    return [output.url_of(n) for n in names]


def read_workers(*stores: Store) -> int:
    """How many reads to run at once: many where an object store's latency is the limit, a few on a
    local disk (``LOCAL_WORKERS``, ``REMOTE_WORKERS``)."""
    return LOCAL_WORKERS if all(store.local for store in stores) else REMOTE_WORKERS


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


def _check_committed(spec: JobSpec, plan: JobPlan, workers: int) -> None:
    """Every planned chunk has a marker, and every other marker is a stale one of this job.

    Markers outside the plan are chunks of files since removed or rewritten: stale, removed after
    the manifest is written, as long as they were committed under this job's settings; a marker of
    other settings (or none readable) means the output mixes two jobs.
    """
    planned = {c.id for c in plan.chunks}
    committed = commit.committed_ids(spec.output)  # one fresh listing
    missing = [c.id for c in plan.chunks if c.id not in committed]
    if missing:
        raise VerificationError(f"{len(missing)} of {len(planned)} chunks are not committed "
                                f"(first {missing[0]}); run the same command again to finish them")
    unplanned = sorted(committed - planned)
    checks = ordered_map(lambda c: _is_foreign(spec.output, c, plan.fingerprint), unplanned, workers)
    foreign = [c for c, is_foreign in zip(unplanned, checks, strict=True) if is_foreign]
    if foreign:
        raise VerificationError(f"{spec.output.url_of(commit.DONE_DIR)} holds markers of chunks committed "
                                f"under other settings ({foreign[:3]}); the output mixes two jobs")


def _is_foreign(output: Store, chunk_id: str, fingerprint: str) -> bool:
    """Whether a marker was committed under other settings (or is unreadable); one removed meanwhile
    (another run's clean-up) is not."""
    try:
        return json.loads(output.read_bytes(commit.marker_name(chunk_id))).get("plan") != fingerprint
    except FileNotFoundError:
        return False
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True


class _Inspection:
    """One pass over the planned chunks in plan order, a window at a time on a thread pool: each
    chunk's marker and part, its status and id columns fetched in one read, give the chunk's index
    row and counters, and its ids go on to the id check (``stream``), so a part is read once.

    Damaged chunks (no ids) and other problems are collected; ``finish`` runs the pass to its end
    if the id check stopped early, then raises for them or returns the totals and the chunk index.
    """

    def __init__(self, spec: JobSpec, plan: JobPlan, workers: int):
        self.totals, self.damage, self.problems = _Totals(), {}, []
        self._buffer = io.BytesIO()
        self._output = spec.output
        columns = ["status", *([spec.id_column] if spec.id_column else [])]
        inspected = ordered_map(lambda c: _inspect(spec.output, c, plan.fingerprint, spec.output_format,
                                                   columns), plan.chunks, workers)
        self.stream: Iterator[pa.Array] = self._run(zip(plan.chunks, inspected, strict=True))

    def _run(self, inspected: Iterator[tuple[Chunk, tuple]]) -> Iterator[pa.Array]:
        with pq.ParquetWriter(self._buffer, INDEX_SCHEMA) as writer:
            window: list[dict] = []
            for chunk, (row, counters, damaged, problem, ids) in inspected:
                if damaged:
                    self.damage[chunk.id] = damaged
                elif problem:
                    self.problems.append(problem)
                else:
                    self.totals.add(row, counters)
                    window.append(row)
                    if ids is not None:
                        yield ids
                if len(window) >= 1024:  # index rows are flushed in batches: memory stays flat
                    writer.write_table(pa.Table.from_pylist(window, INDEX_SCHEMA))
                    window.clear()
            if window:
                writer.write_table(pa.Table.from_pylist(window, INDEX_SCHEMA))

    def finish(self) -> tuple[_Totals, bytes]:
        """The totals and the chunk index (Parquet bytes); raises for damaged chunks (after
        withdrawing their markers) and for other problems."""
        for _ in self.stream:  # what the id check left unread (it stopped early, or there is no id)
            pass
        if self.problems:
            raise VerificationError(f"{len(self.problems)} problem(s) in {self._output.url}: "
                                    + "; ".join(self.problems[:5]))
        if self.damage:
            for chunk_id in self.damage:
                commit.withdraw(self._output, chunk_id)
            raise DamagedChunksError(self.damage)
        return self.totals, self._buffer.getvalue()


def _inspect(output: Store, chunk: Chunk, fingerprint: str, fmt: str, columns: list[str]
             ) -> tuple[dict, dict, str | None, str | None, pa.Array | None]:
    """One chunk's index row, marker counters (``COUNTERS``) and ids (None without an id column), or
    why its part is damaged, or another problem (a foreign marker)."""
    try:
        marker = json.loads(output.read_bytes(commit.marker_name(chunk.id)))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}, {}, "its marker is unreadable", None, None
    if marker.get("plan") != fingerprint:
        return {}, {}, None, f"chunk {chunk.id} was committed under another plan", None
    try:
        table = commit.read_part(output, chunk.id, fmt, columns, size=marker.get("part_bytes"))
    except FileNotFoundError:
        return {}, {}, "its part is missing", None, None
    except (pa.ArrowInvalid, InputDataError) as err:  # InputDataError: a torn CSV/TSV/JSON Lines part
        return {}, {}, f"its part is unreadable ({err})", None, None
    except OSError as err:
        if not _is_corrupt(err):
            raise  # a transient read error is not damage: the caller's retries handle it
        return {}, {}, f"its part is unreadable ({err})", None, None
    rows_out = table.num_rows
    if not rows_out == marker.get("rows_out") == chunk.rows:
        return ({}, {}, f"{chunk.rows} rows in, part holds {rows_out}, marker says {marker.get('rows_out')}",
                None, None)
    # Statuses are counted from the part itself: it is authoritative, not its marker.
    counts = pc.value_counts(table.column("status")).to_pylist()
    statuses = {str(c["values"]): int(c["counts"]) for c in counts}
    row = {"chunk": chunk.id, "part": marker["part"], "file": chunk.file_index, "start": chunk.start,
           "stop": chunk.stop, "rows_in": chunk.rows, "rows_out": rows_out,
           "statuses": sorted(statuses.items()), "source_tokens": marker["source_tokens"],
           "target_tokens": marker["target_tokens"],
           "seconds": {k: float(marker["seconds"].get(k, 0.0)) for k in SECONDS},
           "host": marker.get("host"), "pid": marker.get("pid")}
    counters = {name: {k: v for k, v in marker[name].items() if isinstance(v, int)}
                for name in COUNTERS if isinstance(marker.get(name), dict)}
    ids = table.column(columns[1]).combine_chunks() if len(columns) > 1 else None
    return row, counters, None, None, ids


def _is_corrupt(err: OSError) -> bool:
    """pyarrow reports corrupt pages as ``OSError`` ("Couldn't deserialize thrift"), not ArrowInvalid."""
    return any(s in str(err) for s in ("deserialize", "Parquet", "parquet", "page header"))


def _check_ids(spec: JobSpec, plan: JobPlan, first_pass: Iterator[pa.Array], max_ids_in_memory: int,
               workers: int) -> dict:
    """The ids of new chunks equal their input ids in order, and all output ids are unique.

    One read of the parts' ids serves both checks: the uniqueness check's first pass over them
    (``first_pass``: the inspection's) also compares the new files' chunks with their input ids, read
    in one sequential pass per file; only a corpus with more ids than fit in memory is read again.
    Chunks reused from the last verified run were aligned with the same input content then (their
    ids hash the file's fingerprint): their input is not read again.
    """
    column = spec.id_column
    passes = 0

    def output_ids() -> Iterator[pa.Array]:
        nonlocal passes
        passes += 1
        if passes == 1:
            return _aligned_with_input(spec, plan, first_pass)
        return ordered_map(lambda c: commit.read_part_column(spec.output, c.id, column, spec.output_format),
                           plan.chunks, workers)

    try:
        summary = check_ids(output_ids, plan.corpus.rows, f"output {spec.output.url}", max_ids_in_memory)
    except ValueError as err:
        raise VerificationError(str(err)) from None
    return {"column": column, "aligned_with_input": True, **summary}


def _aligned_with_input(spec: JobSpec, plan: JobPlan, output_ids: Iterator[pa.Array]) -> Iterator[pa.Array]:
    """``output_ids`` (one array per chunk, in plan order), passed through; on the way, each new file's
    chunks are compared with the file's input ids. Raises ``VerificationError`` at the first
    misaligned row."""
    offset = 0
    as_text = spec.output_format in ("csv", "tsv")  # text parts hold every id as its text
    chunks_with_ids = zip(plan.chunks, output_ids, strict=True)
    for file_index, group in groupby(chunks_with_ids, key=lambda pair: pair[0].file_index):
        file = plan.corpus.files[file_index]
        new = plan.is_new(file)
        expected = _ArrayCursor(iter_column(spec.input, [file], spec.id_column)) if new else None
        for _, ids in group:
            if expected is not None:  # canonical: a writer's string encoding is not a difference
                where = first_difference((canonical_ids(a, as_text) for a in expected.take(len(ids))),
                                         iter([canonical_ids(ids, as_text)]))
                if where is not None:
                    _misaligned(offset + where)
            offset += len(ids)
            yield ids
        if expected is not None and expected.take(1):  # the input holds more rows than its chunks
            _misaligned(offset)


def _misaligned(row: int) -> None:
    raise VerificationError(f"output row {row} does not carry input row {row}'s id: rows are misaligned")


class _ArrayCursor:
    """Reads a stream of arrays ``n`` elements at a time, whatever the stream's batch boundaries."""

    def __init__(self, arrays: Iterator[pa.Array]):
        self._arrays = arrays
        self._head: pa.Array | None = None

    def take(self, n: int) -> list[pa.Array]:
        """The next ``n`` elements as slices (fewer at the end of the stream)."""
        out = []
        while n:
            if self._head is None or not len(self._head):
                self._head = next(self._arrays, None)
                if self._head is None:
                    break
                continue
            k = min(n, len(self._head))
            out.append(self._head.slice(0, k))
            self._head, n = self._head.slice(k), n - k
        return out
