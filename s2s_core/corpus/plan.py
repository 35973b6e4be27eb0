"""The plan of one corpus translation job: its settings, pinned in ``<output>/_plan.json``, and its chunks.

The settings are written once with a fingerprint of everything that shapes a translation (input URL,
chunk size, columns, model weights, search settings, and the numerics: device type, autocast dtype,
quantization, which together pin the inference precision). A re-run must produce the same
fingerprint, otherwise committed chunks would mix two different translations: it fails instead.
Batch size (``max_tokens``) is not part of it: hypotheses do not depend on batching (in bf16 only up
to bfloat16 rounding, README "Precision"), so it may change between runs (e.g. after running out of
memory).

The input files are not pinned: every run lists and fingerprints them and cuts their chunks, whose
ids are content-addressed (``files``). Files added since the last verified run (``manifest.json``)
get new chunks, rewritten or renamed files new ids, untouched files the ids of their committed
chunks; ``verify`` removes the chunks of files that are gone once the new manifest is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from s2s_core.corpus.commit import OUTPUT_COLUMNS
from s2s_core.corpus.files import (
    Chunk,
    Corpus,
    InputFile,
    check_columns,
    cut_chunks,
    iter_column,
    open_corpus,
    schema_from_text,
)
from s2s_core.corpus.formats import STAGING_DIR
from s2s_core.corpus.idcheck import check_ids
from s2s_core.storage import Store

PLAN = "_plan.json"
PLAN_FORMAT = 3  # 2: numerics pinned; 3: input files no longer pinned, content-addressed chunk ids
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 3  # 3: input files with fingerprints, what changed since the previous run
# The plan's fields that shape the output; with the model's weights checksum, they make the fingerprint.
SHAPING_FIELDS = ("input", "chunk_rows", "text_column", "id_column", "decode", "numerics", "source_language")
# Shaping fields a plan holds only when they differ from their defaults, so that plans pinned before
# they existed keep their fingerprint: how the input is read (--format, --text-encoding), and the
# parts' format (--output-format), and span protection (--protect: which spans).
OPTIONAL_SHAPING_FIELDS = ("input_reading", "output_format", "protection")


@dataclass(frozen=True)
class JobSpec:
    """What to translate and where to: the input and output stores, the columns and the chunk size."""

    input: Store
    output: Store
    text_column: str = "src"
    id_column: str | None = "id"
    chunk_rows: int = 2000
    input_format: str = "auto"  # auto (by file name), parquet, csv, tsv or jsonl
    text_encoding: str | None = None  # of binary text columns and CSV/TSV files (None: UTF-8 only)
    output_format: str = "parquet"  # of the parts: parquet, csv, tsv or jsonl (``parts``)

    @property
    def staging(self) -> Store:
        """Where Parquet copies of CSV/TSV/JSON Lines input files are staged (``formats``)."""
        return self.output.sub(STAGING_DIR)

    def read_settings(self) -> dict:
        """How the input is read, where it differs from the defaults (pinned in the plan)."""
        settings = {"format": self.input_format, "text_encoding": self.text_encoding}
        return {k: v for k, v in settings.items() if v not in ("auto", None)}


@dataclass(frozen=True)
class ModelIdentity:
    """The model a job translates with, as pinned in its plan and manifest (read from the package config)."""

    url: str
    name: str | None
    version: str | None
    weights_sha256: str | None


@dataclass(frozen=True)
class Numerics:
    """How the model computes: the same weights give other outputs on another device type, under
    another autocast dtype or quantized, so a job must not mix them.

    The inference precision (``--precision``) is pinned through these fields: fp32 is no autocast
    (on CUDA: what ``amp`` asks), bf16 autocast to bfloat16, int8 a quantization scheme.
    """

    device: str  # device type: "cpu" or "cuda"
    amp: str  # autocast dtype: "none", "bfloat16" or "float16"
    quantization: str = "none"  # "none", or the int8 scheme (``s2s_core.inference.precision``)

    @property
    def precision(self) -> str:
        """The precision these numerics compute at: fp32, bf16, int8 (or fp16: CUDA AMP fp16)."""
        if self.quantization != "none":
            return "int8" if self.quantization.startswith("int8") else self.quantization
        return {"none": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(self.amp, self.amp)


class SearchConfig(Protocol):
    """A ``DecodeConfig``: corpus code names its fields but does not import the inference layer."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


@dataclass(frozen=True)
class PreviousRun:
    """What the last verified run of this output translated (from its ``manifest.json``)."""

    files: tuple[dict, ...]  # ``InputFile.record``s, with each file's chunk count and schema index
    schemas: tuple[pa.Schema, ...]  # the files' distinct schemas
    finished_at: str | None

    @property
    def keys(self) -> set[str]:
        return {f["key"] for f in self.files}


@dataclass(frozen=True)
class JobPlan:
    """The chunks of a job (today's input, in corpus order), the record pinned in ``_plan.json`` and
    the last verified run it is compared with."""

    corpus: Corpus
    chunks: tuple[Chunk, ...]
    record: dict
    previous: PreviousRun | None = None
    planned_at: float = field(default_factory=time.time)  # POSIX time the input was listed

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]

    def is_new(self, file: InputFile) -> bool:
        """Whether the file (path + content) was not part of the last verified output."""
        return self.previous is None or file.key not in self.previous.keys


class PlanMismatchError(ValueError):
    """The output already holds a job with a different input, model or settings."""


def decode_settings(decode: SearchConfig) -> dict:
    """The search settings that shape hypotheses (batching and attention output do not)."""
    return {k: v for k, v in asdict(decode).items() if k not in ("max_tokens", "return_attention")}


def previous_run(output: Store, fingerprint: str | None = None) -> PreviousRun | None:
    """The last verified run of ``output`` (its manifest; with ``fingerprint``, only one of those
    settings), or None (none yet, or an older format)."""
    if not output.exists(MANIFEST):
        return None
    manifest = output.read_json(MANIFEST)
    if manifest.get("format") != MANIFEST_FORMAT or "inputs" not in manifest:
        return None
    if fingerprint is not None and manifest.get("plan") != fingerprint:
        return None
    # Manifests before schema evolution hold one schema for all files.
    schemas = manifest["schemas"] if "schemas" in manifest else [manifest["schema"]]
    return PreviousRun(tuple(manifest["inputs"]), tuple(schema_from_text(s) for s in schemas),
                       manifest.get("finished_at"))


def open_input(spec: JobSpec) -> Corpus:
    """Open the input corpus and check it has the columns the job needs (and none the output adds).

    A quick check before a run: files unchanged since the output's last verified run are not opened
    (``_open_input``), and CSV/TSV/JSON Lines files are not staged (only their first rows are read).
    """
    return _open_input(spec, previous_run(spec.output), stage=False)


def _open_input(spec: JobSpec, previous: PreviousRun | None, stage: bool = True) -> Corpus:
    """``open_input`` given the previous run: its unchanged files' fingerprints (local files: the
    quick check), row groups and schemas are on record. With ``stage``, CSV/TSV/JSON Lines files
    not on record are staged as Parquet (their rows are counted)."""
    corpus = open_corpus(spec.input, *((previous.files, previous.schemas) if previous else ((), ())),
                         staging=spec.staging if stage else None, chosen_format=spec.input_format,
                         text_encoding=spec.text_encoding)
    check_columns(corpus, spec.text_column, spec.id_column, OUTPUT_COLUMNS, spec.text_encoding)
    return corpus


def plan_job(spec: JobSpec, identity: ModelIdentity, decode: SearchConfig, numerics: Numerics,
             source_language: str = "en", protection: dict | None = None) -> JobPlan:
    """Pin the job's settings in the output (a re-run must match them), list the input, cut the chunks.

    ``source_language`` picks the sentence rules that split over-long rows: it shapes the output too.
    The ids of files new since the last verified run are checked before anything is translated
    (their repeats of older files' ids are found by verification, over the whole output).
    """
    record = {"format": PLAN_FORMAT, "input": spec.input.url, "chunk_rows": spec.chunk_rows,
              "text_column": spec.text_column, "id_column": spec.id_column, "model": asdict(identity),
              "decode": decode_settings(decode), "numerics": asdict(numerics),
              "source_language": source_language,
              "precision": numerics.precision}  # for readers: the numerics pin it (not in the fingerprint)
    if reading := spec.read_settings():
        record["input_reading"] = reading
    if spec.output_format != "parquet":
        record["output_format"] = spec.output_format
    if protection is not None:  # protected spans shape every row with a span
        record["protection"] = protection
    record["fingerprint"] = _fingerprint(record)
    planned_at = time.time()
    pinned = spec.output.exists(PLAN)
    if pinned:  # refuse a changed job before listing (and maybe hashing) the input
        _check_same_plan(spec.output.read_json(PLAN), record, spec.output.url)
    previous = previous_run(spec.output, record["fingerprint"])
    corpus = _open_input(spec, previous)
    plan = JobPlan(corpus, tuple(cut_chunks(corpus, spec.chunk_rows)), record, previous, planned_at)
    new = [f for f in corpus.files if plan.is_new(f)]
    if spec.id_column is not None and new:  # fail before translating anything, not after the last chunk
        where = f"input {spec.input.url}" + (" (files new since the last run)" if previous else "")
        check_ids(lambda: iter_column(spec.input, new, spec.id_column), sum(f.rows for f in new), where)
    if not pinned:
        try:
            spec.output.create_bytes(PLAN, json.dumps(record, indent=1).encode())
        except FileExistsError:  # a concurrent first run pinned its plan a moment ago
            _check_same_plan(spec.output.read_json(PLAN), record, spec.output.url)
    return plan


def input_changes(plan: JobPlan) -> dict:
    """What changed since the last verified run: files, chunks and rows added, reused and removed.

    A rewritten file is removed (old fingerprint) and added (new one) under the same path; a renamed
    file is removed and added with the same fingerprint. Reused files' chunks were committed and
    verified before: they are not translated, and their input is not read beyond the listing.
    """
    before = {f["key"]: f for f in plan.previous.files} if plan.previous else {}
    chunks = Counter(c.id[: c.id.index("-")] for c in plan.chunks)
    now = {f.key for f in plan.corpus.files}
    added = [f for f in plan.corpus.files if f.key not in before]
    reused = [f for f in plan.corpus.files if f.key in before]
    removed = [f for k, f in before.items() if k not in now]
    added_paths = {f.name for f in added}
    added_fingerprints = {f.fingerprint: f.name for f in added}
    return {
        "since": plan.previous.finished_at if plan.previous else None,
        "files": {"added": [_brief(f.name, f.fingerprint, f.rows) for f in added], "reused": len(reused),
                  "removed": [_brief(f["path"], f["fingerprint"], f["rows"]) for f in removed],
                  "rewritten": sorted(f["path"] for f in removed if f["path"] in added_paths),
                  "renamed": [{"from": f["path"], "to": added_fingerprints[f["fingerprint"]]}
                              for f in removed if f["fingerprint"] in added_fingerprints
                              and f["path"] not in added_paths]},
        "chunks": {"added": sum(chunks[f.key] for f in added), "reused": sum(chunks[f.key] for f in reused),
                   "removed": sum(f["chunks"] for f in removed)},
        "rows": {"added": sum(f.rows for f in added), "reused": sum(f.rows for f in reused),
                 "removed": sum(f["rows"] for f in removed)},
    }


def _brief(path: str, fingerprint: str, rows: int) -> dict:
    return {"path": path, "fingerprint": fingerprint, "rows": rows}


def _fingerprint(record: dict) -> str:
    shaping = {k: record[k] for k in SHAPING_FIELDS}
    shaping.update({k: record[k] for k in OPTIONAL_SHAPING_FIELDS if k in record})
    shaping["weights"] = record["model"]["weights_sha256"]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def _check_same_plan(pinned: dict, record: dict, output: str) -> None:
    if pinned.get("format") != record["format"]:
        raise PlanMismatchError(f"output {output} was written by an older s2s (plan format "
                                f"{pinned.get('format')}, now {record['format']}: chunks are named "
                                "differently); use a new --output or delete it to start over")
    if pinned.get("fingerprint") == record["fingerprint"]:
        return
    changed = [k for k in SHAPING_FIELDS if pinned.get(k) != record[k]]
    changed += [k for k in OPTIONAL_SHAPING_FIELDS if pinned.get(k) != record.get(k)]
    if pinned.get("model", {}).get("weights_sha256") != record["model"]["weights_sha256"]:
        changed.append("model")
    numerics = ""
    if "numerics" in changed:  # another machine, or another --precision
        numerics = (f" (pinned {_precision_of(pinned.get('numerics'))} {pinned.get('numerics')}, "
                    f"now {record['precision']} {record['numerics']})")
    raise PlanMismatchError(f"output {output} holds a translation with a different "
                            f"{', '.join(changed) or 'plan'}{numerics}; use a new --output or delete it "
                            "to start over")


def _precision_of(numerics: Any) -> str:
    """The precision a pinned plan's numerics stand for ("?" when unreadable)."""
    try:
        return Numerics(**numerics).precision
    except TypeError:
        return "?"
