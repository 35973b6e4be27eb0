"""One corpus translation job: its plan (pinned in the output), and translating one chunk.

The plan is written once to ``<output>/_plan.json`` with a fingerprint of everything that shapes
the result (input files and row groups, chunk size, columns, model weights, search settings). A
re-run must produce the same fingerprint, otherwise committed chunks would mix two different
translations: it fails instead. Batch size (``max_tokens``) is not part of it: hypotheses do not
depend on batching, so it may change between runs (e.g. after running out of memory).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from s2s_core import storage
from s2s_core.corpus import commit as parts
from s2s_core.corpus.files import (
    Chunk,
    Corpus,
    check_columns,
    input_filesystem,
    iter_column,
    open_corpus,
    plan_chunks,
    read_chunk,
)
from s2s_core.corpus.idcheck import DEFAULT_MAX_IDS_IN_MEMORY, find_duplicate_ids
from s2s_core.inference.package import read_package_config
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.registry.registry import resolve_model

PLAN_FORMAT = 1
OUTPUT_COLUMNS = ("translation", "score", "status")


@dataclass(frozen=True)
class JobSpec:
    """What to translate and where to: the URLs, columns and chunk size of one job."""

    input: str
    output: str
    text_column: str = "src"
    id_column: str | None = "id"
    chunk_rows: int = 2000
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPlan:
    """The chunks of a job and the record pinned in ``_plan.json``."""

    corpus: Corpus
    chunks: tuple[Chunk, ...]
    record: dict

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]


class PlanMismatchError(ValueError):
    """The output already holds a job with a different input, model or settings."""


def model_identity(model_url: str, storage_options: dict[str, Any] | None = None) -> dict:
    """Name, version and weights checksum of a package, from its config only (fast, no weights)."""
    config = read_package_config(model_url, storage_options)
    weights = config["files"].get("model.safetensors", {})
    return {"url": model_url, "name": config.get("name"), "version": config.get("version"),
            "weights_sha256": weights.get("sha256")}


def decode_settings(decode: DecodeConfig) -> dict:
    """The search settings that shape hypotheses (batching and attention output do not)."""
    return {k: v for k, v in asdict(decode).items() if k not in ("max_tokens", "return_attention")}


def _fingerprint(record: dict) -> str:
    shaping = {k: record[k] for k in ("files", "chunk_rows", "text_column", "id_column", "decode")}
    shaping["weights"] = record["model"]["weights_sha256"]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def plan_job(spec: JobSpec, model: dict, decode: DecodeConfig) -> JobPlan:
    """Plan the chunks and pin the plan in the output; a re-run must match the pinned plan."""
    opts = spec.storage_options
    corpus = open_corpus(spec.input, opts)
    check_columns(corpus, spec.text_column, spec.id_column, OUTPUT_COLUMNS)
    chunks = tuple(plan_chunks(corpus, spec.chunk_rows))
    record = {"format": PLAN_FORMAT, "input": spec.input,
              "files": [{"path": f.path, "row_groups": list(f.row_groups)} for f in corpus.files],
              "rows": corpus.rows, "chunks": len(chunks), "chunk_rows": spec.chunk_rows,
              "text_column": spec.text_column, "id_column": spec.id_column, "model": model,
              "decode": decode_settings(decode)}
    record["fingerprint"] = _fingerprint(record)
    url = storage.join(spec.output, parts.PLAN)
    if storage.exists(url, **opts):
        _check_same_plan(json.loads(storage.read_text(url, **opts)), record, spec.output)
        return JobPlan(corpus, chunks, record)
    if spec.id_column is not None:  # fail before translating anything, not after the last chunk
        check_ids(lambda: iter_column(input_filesystem(spec.input, opts), corpus, spec.id_column),
                  corpus.rows, f"input {spec.input}")
    try:
        storage.create_bytes(url, json.dumps(record, indent=1).encode(), **opts)
    except FileExistsError:  # a concurrent first run pinned its plan a moment ago
        _check_same_plan(json.loads(storage.read_text(url, **opts)), record, spec.output)
    return JobPlan(corpus, chunks, record)


def _check_same_plan(pinned: dict, record: dict, output: str) -> None:
    if pinned.get("fingerprint") == record["fingerprint"]:
        return
    keys = ("files", "chunk_rows", "text_column", "id_column", "decode")
    changed = [k for k in keys if pinned.get(k) != record[k]]
    if pinned.get("model", {}).get("weights_sha256") != record["model"]["weights_sha256"]:
        changed.append("model")
    raise PlanMismatchError(f"output {output} holds a translation with a different "
                            f"{', '.join(changed) or 'plan'}; use a new --output or delete it to start over")


def check_ids(stream: Callable[[], Iterator[pa.Array]], rows: int, where: str,
              max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY) -> dict:
    """Raise ``ValueError`` on null or repeated ids; returns the check's summary."""
    report = find_duplicate_ids(stream, rows, max_ids_in_memory)
    if report.nulls:
        raise ValueError(f"{where}: {report.nulls} rows have a null id")
    if report.duplicates:
        shown = ", ".join(f"{k!r} ×{n}" for k, n in report.duplicates.items())
        raise ValueError(f"{where}: ids are not unique ({shown}); pass another --id-column or --id-column ''")
    return {"rows": report.rows, "unique": True, "passes": report.passes}


def preflight(spec: JobSpec, model_url: str) -> Corpus:
    """Fail fast, before any run starts, on a missing input or model, or a missing column."""
    model_identity(resolve_model(model_url, spec.storage_options), spec.storage_options)
    corpus = open_corpus(spec.input, spec.storage_options)
    check_columns(corpus, spec.text_column, spec.id_column, OUTPUT_COLUMNS)
    return corpus


def translate_chunk(translator: Translator | Callable[[], Translator], spec: JobSpec, plan_fingerprint: str,
                    chunk: Chunk, decode: DecodeConfig) -> dict:
    """Translate, write and commit one chunk; returns its marker record (``skipped`` if committed).

    ``translator`` may be a callable, called only when the chunk still needs translating (so a
    re-run does not load a model just to skip committed chunks).
    """
    opts = spec.storage_options
    if parts.is_committed(spec.output, chunk.id, opts):
        return {**parts.read_markers(spec.output, [chunk.id], opts)[chunk.id], "skipped": True}
    started = time.perf_counter()
    table = read_chunk(input_filesystem(spec.input, opts), chunk)
    read_done = time.perf_counter()
    if not isinstance(translator, Translator):
        translator = translator()  # a cached model returns at once; the first load is timed apart
    loaded = time.perf_counter()
    out = translator.translate(table.column(spec.text_column).to_pylist(), decode)
    translate_done = time.perf_counter()
    if len(out) != table.num_rows:  # the Translator guarantees this; a part must never be short
        raise RuntimeError(f"chunk {chunk.id}: {table.num_rows} rows in, {len(out)} out")
    table = (table.append_column("translation", pa.array([t.text for t in out], pa.string()))
             .append_column("score", pa.array([t.score for t in out], pa.float64()))
             .append_column("status", pa.array([t.status for t in out], pa.string())))
    part_bytes = parts.write_part(spec.output, chunk.id, table, opts)
    finished = time.perf_counter()
    record = {"chunk": chunk.id, "file": chunk.path, "start": chunk.start, "stop": chunk.stop,
              "rows_in": chunk.rows, "rows_out": table.num_rows, "part": parts.part_name(chunk.id),
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
    committed = parts.commit(spec.output, chunk.id, record, opts)
    return {**record, "skipped": not committed}

