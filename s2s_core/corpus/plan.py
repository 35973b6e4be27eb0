"""The plan of one corpus translation job: its chunks, pinned in ``<output>/_plan.json``.

The plan is written once with a fingerprint of everything that shapes the result (input files and
row groups, chunk size, columns, model weights, search settings, and the numerics: device type, AMP
dtype, quantization). A re-run must produce the same fingerprint, otherwise committed chunks would
mix two different translations: it fails instead.
Batch size (``max_tokens``) is not part of it: hypotheses do not depend on batching, so it may
change between runs (e.g. after running out of memory).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

from s2s_core.corpus.commit import OUTPUT_COLUMNS
from s2s_core.corpus.files import Chunk, Corpus, check_columns, cut_chunks, iter_column, open_corpus
from s2s_core.corpus.idcheck import check_ids
from s2s_core.storage import Store

PLAN = "_plan.json"
PLAN_FORMAT = 2  # 2: numerics pinned
# The plan's fields that shape the output; with the model's weights checksum, they make the fingerprint.
SHAPING_FIELDS = ("files", "chunk_rows", "text_column", "id_column", "decode", "numerics", "source_language")


@dataclass(frozen=True)
class JobSpec:
    """What to translate and where to: the input and output stores, the columns and the chunk size."""

    input: Store
    output: Store
    text_column: str = "src"
    id_column: str | None = "id"
    chunk_rows: int = 2000


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
    another AMP dtype or quantized, so a job must not mix them."""

    device: str  # device type: "cpu" or "cuda"
    amp: str  # autocast dtype: "none", "bfloat16" or "float16"
    quantization: str = "none"


class SearchConfig(Protocol):
    """A ``DecodeConfig``: corpus code names its fields but does not import the inference layer."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


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


def decode_settings(decode: SearchConfig) -> dict:
    """The search settings that shape hypotheses (batching and attention output do not)."""
    return {k: v for k, v in asdict(decode).items() if k not in ("max_tokens", "return_attention")}


def open_input(spec: JobSpec) -> Corpus:
    """Open the input corpus and check it has the columns the job needs (and none the output adds)."""
    corpus = open_corpus(spec.input)
    check_columns(corpus, spec.text_column, spec.id_column, OUTPUT_COLUMNS)
    return corpus


def plan_job(spec: JobSpec, identity: ModelIdentity, decode: SearchConfig, numerics: Numerics,
             source_language: str = "en") -> JobPlan:
    """Cut the corpus into chunks and pin the plan in the output; a re-run must match the pinned plan.

    ``source_language`` picks the sentence rules that split over-long rows: it shapes the output too.
    """
    corpus = open_input(spec)
    chunks = tuple(cut_chunks(corpus, spec.chunk_rows))
    record = {"format": PLAN_FORMAT, "input": spec.input.url,
              "files": [{"path": f.path, "row_groups": list(f.row_groups)} for f in corpus.files],
              "rows": corpus.rows, "chunks": len(chunks), "chunk_rows": spec.chunk_rows,
              "text_column": spec.text_column, "id_column": spec.id_column, "model": asdict(identity),
              "decode": decode_settings(decode), "numerics": asdict(numerics),
              "source_language": source_language}
    record["fingerprint"] = _fingerprint(record)
    if spec.output.exists(PLAN):
        _check_same_plan(spec.output.read_json(PLAN), record, spec.output.url)
        return JobPlan(corpus, chunks, record)
    if spec.id_column is not None:  # fail before translating anything, not after the last chunk
        check_ids(lambda: iter_column(spec.input, corpus, spec.id_column), corpus.rows,
                  f"input {spec.input.url}")
    try:
        spec.output.create_bytes(PLAN, json.dumps(record, indent=1).encode())
    except FileExistsError:  # a concurrent first run pinned its plan a moment ago
        _check_same_plan(spec.output.read_json(PLAN), record, spec.output.url)
    return JobPlan(corpus, chunks, record)


def _fingerprint(record: dict) -> str:
    shaping = {k: record[k] for k in SHAPING_FIELDS}
    shaping["weights"] = record["model"]["weights_sha256"]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def _check_same_plan(pinned: dict, record: dict, output: str) -> None:
    if pinned.get("fingerprint") == record["fingerprint"]:
        return
    changed = [k for k in SHAPING_FIELDS if pinned.get(k) != record[k]]
    if pinned.get("model", {}).get("weights_sha256") != record["model"]["weights_sha256"]:
        changed.append("model")
    numerics = ""
    if "numerics" in changed:  # the one change a resumed job meets by accident (another machine)
        numerics = f" (pinned {pinned.get('numerics')}, now {record['numerics']})"
    raise PlanMismatchError(f"output {output} holds a translation with a different "
                            f"{', '.join(changed) or 'plan'}{numerics}; use a new --output or delete it "
                            "to start over")
