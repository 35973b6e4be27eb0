"""Corpus translation tasks: plan the job, translate one chunk per task run, verify and write the manifest.

The work itself is in ``s2s_core.corpus``. This layer resolves the model, builds the input and output
``Store`` handles from the config, keeps each worker's loaded model and GPU, and reports progress.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial

import torch
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from s2s_core import __version__, storage
from s2s_core.corpus.chunk import Translate, translate_chunk
from s2s_core.corpus.commit import OUTPUT_COLUMNS, committed_ids, read_markers
from s2s_core.corpus.files import Chunk
from s2s_core.corpus.memory import TranslationMemory, open_memory
from s2s_core.corpus.plan import (
    JobPlan,
    JobSpec,
    ModelIdentity,
    Numerics,
    PlanMismatchError,
    decode_settings,
    input_changes,
    open_input,
    plan_job,
)
from s2s_core.corpus.verify import MANIFEST, remove_staging, remove_stale, verify_output
from s2s_core.device import resolve_device
from s2s_core.inference.flags import FLAGS, thresholds_from
from s2s_core.inference.package import WEIGHTS, PackageError, load_package, read_package_config
from s2s_core.inference.precision import autocast_dtype, quantization
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.inference.translator import Translator
from s2s_core.registry.registry import NoServingModel, resolve_model
from s2s_core.storage import Store
from s2s_core.text.spans import DEFAULT_RULES, has_spans
from tasks.chunk_feed import FeedWriter
from tasks.common import IO_RETRIES, artifact_key, run_logger
from tasks.config import TranslateConfig
from tasks.progress import ProgressBar

# One model per (package, device, amp, precision, source language) per worker process: a Dask worker
# or the flow's process loads it once and every chunk it runs reuses it. The lock stops two threads
# loading it twice.
_TRANSLATORS: dict[tuple, Translator] = {}
_LOADS: Counter[tuple] = Counter()
_LOCK = threading.Lock()
_FREE_GPUS: queue.Queue[str] | None = None
# Translation memory handles, one per (memory, model, settings): namespaces are opened once per process.
_MEMORIES: dict[tuple, TranslationMemory] = {}
_MEMORY_LOCK = threading.Lock()


def job_spec(config: TranslateConfig) -> JobSpec:
    """The job's input and output stores (each filesystem built once, here) and its settings."""
    opts = config.storage_options
    return JobSpec(Store(config.input, opts), Store(config.output, opts), config.text_column,
                   config.id_column, config.chunk_rows, config.input_format, config.text_encoding,
                   config.output_format)


def model_identity(model_url: str, package: dict) -> ModelIdentity:
    """Name, version and weights checksum of a package, from its config (``read_package_config``)."""
    weights = package["files"].get(WEIGHTS, {})
    return ModelIdentity(model_url, package.get("name"), package.get("version"), weights.get("sha256"))


def package_source_language(package: dict) -> str:
    """The source language a package config records (English for packages written before it did)."""
    return package.get("source_language") or DEFAULT_LANGUAGE


def numerics(config: TranslateConfig, device: str | None = None) -> Numerics:
    """The device type, autocast dtype and quantization a chunk computes with at the config's precision
    (pinned in the plan)."""
    resolved = resolve_device(device or config.device)
    dtype = autocast_dtype(config.precision, resolved, config.amp)
    return Numerics(device=resolved.type, amp=str(dtype).removeprefix("torch.") if dtype else "none",
                    quantization=quantization(config.precision))


def preflight(config: TranslateConfig) -> None:
    """Fail fast, before any run starts, on a missing model or input, a missing column, or --protect
    with a model trained without protected spans."""
    protection_of(config, read_package_config(resolve_model(config.model, config.storage_options),
                                              config.storage_options))
    open_input(job_spec(config))


def protection_of(config: TranslateConfig, package: dict) -> bool:
    """Whether spans are protected: ``config.protect``, by default the package's (trained with them)."""
    trained = bool(package["tokenizer"]["config"].get("placeholders"))
    if config.protect and not trained:
        raise PackageError(f"{config.model} was trained without protected spans (its tokenizer lacks the "
                           "placeholder symbols): translate it without --protect")
    return trained if config.protect is None else config.protect


def protection_record(config: TranslateConfig) -> dict | None:
    """What the plan and the memory pin of span protection (None when off: older plans match)."""
    return {"spans": asdict(config.spans)} if config.protect else None


def _translator_key(config: TranslateConfig, device: str) -> tuple:
    return config.model, device, config.amp, config.precision, config.source_language, config.protect, \
        config.spans


def cached_translator(config: TranslateConfig, device: str) -> tuple[Translator, int]:
    """This process's translator for the config's model, and how often this process loaded it."""
    key = _translator_key(config, device)
    with _LOCK:
        if key not in _TRANSLATORS:
            package = load_package(config.model, device=device, storage_options=config.storage_options)
            _TRANSLATORS[key] = package.translator(device, config.amp, language=config.source_language,
                                                   precision=config.precision, protect=config.protect,
                                                   span_rules=config.spans)
            _LOADS[key] += 1
        return _TRANSLATORS[key], _LOADS[key]


def memory_keys(config: TranslateConfig, pinned_numerics: dict) -> dict:
    """What a translation memory namespace is keyed by: everything that shapes a part row but its text.

    The package's files (weights and tokenizers, by checksum) and model config, the plan's numerics
    (device type, autocast dtype and quantization: so the precision),
    the search settings, the source language (sentence rules), the columns a part gets, the quality
    flags' thresholds, and the versions of the code that cuts and tokenizes rows (s2s major.minor:
    patch releases do not change translations; a release that does starts new namespaces, and the
    old ones can be deleted); for a quantized model also torchao's, which computes its int8 weights.
    Torch's version is not in it, as it is not in the plan.
    """
    package = read_package_config(config.model, config.storage_options)
    files = {name: f["sha256"] for name, f in sorted(package["files"].items()) if name != "metrics.json"}
    quantized = pinned_numerics.get("quantization", "none") != "none"
    quantizer = {"torchao": _version("torchao")} if quantized else {}
    return {"model": {"files": files, "config": package["model"], "tokenizer": package["tokenizer"]},
            "numerics": pinned_numerics, "decode": decode_settings(config.decode),
            "source_language": config.source_language, "columns": list(OUTPUT_COLUMNS),
            **({"protection": protection_record(config)} if config.protect else {}),
            # What the translator flags rows with: the package's calibrated thresholds, else the defaults.
            "flag_thresholds": asdict(thresholds_from(package.get("flag_thresholds"))),
            "flags": list(FLAGS),  # a new flag starts a new namespace: old entries lack it
            "code": {"s2s": ".".join(__version__.split(".")[:2]),
                     "sentencepiece": _version("sentencepiece"), "sentencex": _version("sentencex"),
                     **quantizer}}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def translation_memory(config: TranslateConfig, pinned_numerics: dict) -> TranslationMemory:
    """This process's handle on the memory namespace of the config's model and settings (opened once)."""
    key = (config.memory_url, config.model, json.dumps(pinned_numerics, sort_keys=True),
           json.dumps(decode_settings(config.decode), sort_keys=True), config.source_language)
    with _MEMORY_LOCK:
        if key not in _MEMORIES:
            store = Store(config.memory_url, config.storage_options)
            _MEMORIES[key] = open_memory(store, memory_keys(config, pinned_numerics))
        return _MEMORIES[key]


@contextmanager
def leased_device(requested: str) -> Iterator[str]:
    """With ``auto`` and several GPUs, each concurrently running chunk holds a GPU of its own."""
    global _FREE_GPUS
    if requested != "auto" or torch.cuda.device_count() < 2:
        yield requested
        return
    with _LOCK:
        if _FREE_GPUS is None:
            _FREE_GPUS = queue.Queue()
            for i in range(torch.cuda.device_count()):
                _FREE_GPUS.put(f"cuda:{i}")
    device = _FREE_GPUS.get()  # the thread pool has one worker per GPU, so one is always free
    try:
        yield device
    finally:
        _FREE_GPUS.put(device)


@dataclass(frozen=True)
class PlannedTranslation:
    """The plan, the chunks still to translate, and the model URL and output every chunk uses."""

    plan: JobPlan
    pending: list[Chunk]
    model_url: str
    output: str
    source_language: str
    protect: bool


@task(name="plan-chunks", **IO_RETRIES, cache_policy=NONE)
def plan_translation(config: TranslateConfig) -> PlannedTranslation | None:
    """Pin the job's settings in the output, list the input, cut the chunks and find those not yet
    committed (files unchanged since the last verified run keep their committed chunks).

    A registry URL (``<store>/models/<name>``) is resolved here, once: every chunk of the run uses
    the package that was serving when it started. Before the registry's first promotion there is
    nothing to translate with: None (the run is skipped, not failed).
    """
    try:
        model_url = resolve_model(config.model, config.storage_options)
    except NoServingModel as err:
        run_logger().warning("%s: skipping this run", err)
        return None
    if config.output_per_version:
        version = model_url.rstrip("/").rsplit("/", 1)[-1]
        config = config.model_copy(update={"output": storage.join(config.output, version)})
    package = read_package_config(model_url, config.storage_options)  # read once: identity and language
    if config.source_language is None:  # the package's own, pinned in the plan like any setting
        config = config.model_copy(update={"source_language": package_source_language(package)})
    config = config.model_copy(update={"protect": protection_of(config, package)})
    spec = job_spec(config)
    spec.output.check_exclusive_create()  # commit markers are only as safe as the store's conditional puts
    plan = plan_job(spec, model_identity(model_url, package), config.decode, numerics(config),
                    config.source_language, protection_record(config))
    committed = committed_ids(spec.output)
    pending = [c for c in plan.chunks if c.id not in committed]
    logger = run_logger()
    logger.info("%s: %d rows in %d file(s) → %d chunks of ≤ %d rows; %d already committed, "
                "%d to translate", config.input, plan.corpus.rows, len(plan.corpus.files),
                len(plan.chunks), config.chunk_rows, len(plan.chunks) - len(pending), len(pending))
    staged = [f for f in plan.corpus.files if f.staged is not None and plan.is_new(f)]
    if staged:
        logger.info("%d CSV/TSV/JSON Lines file(s) staged as Parquet (%d rows) under %s", len(staged),
                    sum(f.rows for f in staged), spec.staging.url)
    if plan.previous is not None:
        changes = input_changes(plan)
        files = changes["files"]
        logger.info("since the last verified run (%s): %d file(s) added (%d rows), %d reused (%d rows), "
                    "%d removed (%d rows); rewritten: %s", changes["since"], len(files["added"]),
                    changes["rows"]["added"], files["reused"], changes["rows"]["reused"],
                    len(files["removed"]), changes["rows"]["removed"], files["rewritten"][:5] or "none")
    if config.retry_failed:
        retry = with_failed_rows(spec, [c for c in plan.chunks if c.id in committed])
        logger.info("--retry-failed: %d committed chunk(s) hold failed rows", len(retry))
        order = {c.id: i for i, c in enumerate(plan.chunks)}  # ids do not sort in corpus order
        pending = sorted([*pending, *retry], key=lambda c: order[c.id])
    return PlannedTranslation(plan, pending, model_url, config.output, config.source_language,
                              config.protect)


def with_failed_rows(spec: JobSpec, chunks: list[Chunk]) -> list[Chunk]:
    """The committed chunks whose markers count ``failed`` rows (markers read concurrently)."""
    markers = read_markers(spec.output, [c.id for c in chunks])
    return [c for c in chunks if markers[c.id]["statuses"].get("failed")]


def _batch_run_name() -> str:
    """Task run names say which chunks a batch holds (its first chunk and how many)."""
    from prefect.runtime import task_run

    chunks = task_run.parameters["chunks"]
    more = f" +{len(chunks) - 1}" if len(chunks) > 1 else ""
    return f"translate-{chunks[0].id}{more}" if chunks else "translate-none"


@task(name="translate-chunks", task_run_name=_batch_run_name, **IO_RETRIES, cache_policy=NONE)
def run_chunks(chunks: list[Chunk], config: TranslateConfig, plan_fingerprint: str, pinned_numerics: dict,
               feed: str | None = None) -> dict:
    """Translate and commit a batch of chunks, one after the other, on this worker's model and device.

    The chunk stays the unit of commit and resume: each is committed on its own, and its marker
    record (plus this worker's pid and model loads) goes to the flow's ``feed`` at once, so progress
    is per chunk. A task run per batch instead of per chunk keeps the orchestration cost (Prefect's
    task runs, their events and state records) independent of the corpus size. A chunk that fails
    does not stop the others; the first error is raised after the last one, and a retry of the task
    run skips the chunks committed meanwhile. Returns how many chunks the batch held.
    """
    failed: list[BaseException] = []
    with leased_device(config.device) as device:
        here = asdict(numerics(config, device))
        if here != pinned_numerics:  # e.g. a Dask worker on other hardware than the planning process
            raise PlanMismatchError(f"chunk {chunks[0].id if chunks else '-'}: this worker computes with "
                                    f"{here}, the job's plan pins {pinned_numerics}; run it where the plan "
                                    "was made")

        def load_translate() -> Translate:
            translator = cached_translator(config, device)[0]
            return lambda texts: translator.translate(texts, config.decode)

        memory = translation_memory(config, pinned_numerics) if config.use_memory else None
        spec = job_spec(config)
        # The rules the translator's per-row check uses (Translator.check_rules), without loading it.
        spans_in = partial(has_spans, rules=config.spans if config.protect else DEFAULT_RULES)

        with FeedWriter(feed) as progress:
            for chunk in chunks:
                try:
                    record = translate_chunk(spec, plan_fingerprint, chunk, load_translate,
                                             retry_failed=config.retry_failed, memory=memory,
                                             has_spans=spans_in)
                except Exception as err:  # noqa: BLE001 - the batch's other chunks still run and commit
                    run_logger().error("chunk %s failed: %s: %s", chunk.id, type(err).__name__, err)
                    progress.put({"chunk": chunk.id, "error": f"{type(err).__name__}: {err}"})
                    failed.append(err)
                    continue
                loads = _LOADS[_translator_key(config, device)]
                progress.put({**record, "worker_pid": os.getpid(), "model_loads": loads})
    if failed:
        raise failed[0]
    return {"chunks": len(chunks)}


@task(name="finalize", **IO_RETRIES, cache_policy=NONE)
def finalize(config: TranslateConfig, plan: JobPlan, this_run: dict) -> dict:
    """Verify every row is in the output exactly once, write ``manifest.json``, then remove the stale
    chunks (of files removed or rewritten since the last run) that it no longer lists."""
    spec = job_spec(config)
    started = time.perf_counter()
    manifest = verify_output(spec, plan, this_run)
    verify_seconds = time.perf_counter() - started
    stale = remove_stale(spec, plan, manifest)
    staged = remove_staging(spec)  # copies of CSV/TSV/JSON Lines inputs: not needed once verified
    # The input-file table is for the next run, not for a summary (thousands of files).
    summary = {**{k: v for k, v in manifest.items() if k not in ("inputs", "schemas")},
               "manifest": spec.output.url_of(MANIFEST), "stale_removed": stale,
               "verify_seconds": round(verify_seconds, 3)}
    logger = run_logger()
    if stale.get("markers") or stale.get("parts") or stale.get("skipped"):
        logger.info("stale chunks removed: %s", stale)
    if staged:
        logger.info("removed the Parquet copies of %d CSV/TSV/JSON Lines input file(s) staged for this "
                    "run", staged)
    logger.info("verified %d rows in = %d rows out (%s) in %.1f s; manifest at %s", manifest["rows_in"],
                manifest["rows_out"], _statuses(manifest["statuses"]), verify_seconds, summary["manifest"])
    if manifest.get("placeholders"):
        logger.info("placeholders: %s", _placeholders(manifest["placeholders"]))
    if manifest["failed_rows"]:
        logger.warning("%d rows failed to translate (out of memory even alone); the same command with "
                       "--retry-failed translates exactly those rows again", manifest["failed_rows"])
    create_markdown_artifact(_markdown(summary), key=output_artifact_key(config.output, "manifest"),
                             description=f"corpus translation {config.output}")
    return summary


def record_skip(config: TranslateConfig, reason: str) -> dict:
    """Publish why a run translated nothing (a markdown artifact); returns the run's result."""
    create_markdown_artifact("\n".join([
        "# Corpus translation skipped", "", reason, "",
        f"- model: `{config.model}`", f"- input: `{config.input}`", f"- output: `{config.output}`"]),
        key=output_artifact_key(config.output, "skipped"), description=f"corpus translation {config.output}")
    run_logger().warning("%s", reason)
    return {"skipped": reason, "model": config.model, "input": config.input, "output": config.output}


def output_artifact_key(output: str, suffix: str) -> str:
    """Outputs are URLs: name them in artifact keys by a short hash."""
    return artifact_key(f"translate-{hashlib.sha1(output.encode()).hexdigest()[:12]}", suffix)


# At most one progress line and artifact update per this many seconds (and one for the last chunk):
# a line per chunk would be 50,000 log records and artifact writes on the server for 100M rows.
REPORT_SECONDS = 2.0


class ChunkProgress:
    """Counts finished chunks (each one, as it commits), logs a progress line and updates a progress
    artifact every ``REPORT_SECONDS``, and on a terminal moves a live bar (rows, rate, ETA)."""

    def __init__(self, plan: JobPlan, pending: list[Chunk], output: str):
        self.logger = run_logger()
        self.total_chunks, self.total_rows = len(plan.chunks), plan.corpus.rows
        self.skipped = self.total_chunks - len(pending)
        self.done_chunks, self.done_rows = self.skipped, self.total_rows - sum(c.rows for c in pending)
        self.translated = self.rows = self.model_seconds = self.retried_rows = self.retried_chunks = 0
        self.commit_seconds = 0.0  # the chunks' commit markers (exclusive creates, fsynced)
        self.workers: dict[str, dict] = {}
        self.memory: Counter[str] = Counter()  # translation memory hits/misses/written of this run
        self.started = time.perf_counter()
        self.reported_at, self.unreported = float("-inf"), False
        self.artifact = create_progress_artifact(self.percent, key=output_artifact_key(output, "progress"),
                                                 description=f"chunks of {output} committed")
        # Each finished chunk is logged anyway: the bar adds nothing off a terminal.
        self.bar = ProgressBar(f"translating {output}", self.total_rows, "rows", self.logger, every=None)
        self.bar.update(self.done_rows)

    def close(self) -> None:
        if self.unreported:  # the run ends (or fails) between two reports: say where it stands
            self.report()
        self.bar.close()

    @property
    def percent(self) -> float:
        return round(100 * self.done_rows / self.total_rows, 1) if self.total_rows else 100.0

    def redo(self, chunks: list[Chunk]) -> None:
        """Count ``chunks`` as not done again (their parts were found damaged and un-committed)."""
        self.done_chunks -= len(chunks)
        self.done_rows -= sum(c.rows for c in chunks)
        self.skipped -= len(chunks)  # counted as skipped (committed) when this run started

    def update(self, record: dict) -> None:
        self.done_chunks += 1
        self.done_rows += record["rows_in"]
        if record.get("retried"):  # --retry-failed: only the failed rows were translated again
            self.retried_rows += record["retried"]["rows"]
            self.retried_chunks += 1
        elif record["skipped"]:  # committed by another attempt in the meantime
            self.skipped += 1
        else:
            self.translated += 1
            self.rows += record["rows_in"]
            self.model_seconds += record["seconds"]["translate"]
            self.commit_seconds += record.get("commit_seconds", 0.0)
        if not record["skipped"]:
            self.memory.update(record.get("retried", record).get("memory") or {})
        worker = self.workers.setdefault(str(record["worker_pid"]), {"chunks": 0, "model_loads": 0})
        worker["chunks"] += 1
        worker["model_loads"] = max(worker["model_loads"], record["model_loads"])
        self.bar.update(self.done_rows, description=f"chunks {self.done_chunks}/{self.total_chunks}")
        now = time.perf_counter()
        if now - self.reported_at >= REPORT_SECONDS or self.done_chunks >= self.total_chunks:
            self.report(now)
        else:
            self.unreported = True

    def report(self, now: float | None = None) -> None:
        """The progress line in the log and the progress artifact's value, as of now."""
        now = now or time.perf_counter()
        self.reported_at, self.unreported = now, False
        elapsed = now - self.started
        rate = self.rows / elapsed if elapsed else 0.0
        eta = (self.total_rows - self.done_rows) / rate if rate else float("nan")
        looked_up = self.memory["hits"] + self.memory["misses"]
        hit_rate = f", memory hits {100 * self.memory['hits'] / looked_up:.1f}%" if looked_up else ""
        self.logger.info("chunks %d/%d, rows %d/%d (%.1f%%), %.1f rows/s, eta %.0f s%s",
                         self.done_chunks, self.total_chunks, self.done_rows, self.total_rows, self.percent,
                         rate, eta, hit_rate)
        update_progress_artifact(self.artifact, self.percent)

    def summary(self) -> dict:
        """This run's share of the work and its wall-clock throughput."""
        wall = time.perf_counter() - self.started
        return {"chunks_translated": self.translated, "chunks_skipped": self.skipped,
                "chunks_retried": self.retried_chunks, "rows_retried": self.retried_rows,
                "rows_translated": self.rows, "wall_seconds": round(wall, 3),
                "rows_per_second": round(self.rows / wall, 2) if wall else 0.0,
                "model_seconds": round(self.model_seconds, 3),
                "commit_seconds": round(self.commit_seconds, 3), "workers": self.workers,
                **({"memory": dict(self.memory)} if self.memory else {})}


def _statuses(counts: dict) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _placeholders(rate: dict) -> str:
    """``placeholder_rate`` as a line (the evaluation report has its own: that layer imports nothing, and
    importing it here would load matplotlib into every translation worker)."""
    if not rate["rows_with_spans"]:
        return f"no source row holds a protected span; {rate['invented']} rows invented one"
    return (f"{rate['exact']} of {rate['rows_with_spans']} rows with spans exact "
            f"({100 * rate['rate']:.2f} %); {rate['invented']} rows without spans invented one")


def _markdown(summary: dict) -> str:
    run = summary["this_run"]
    return "\n".join([
        f"# Corpus translation: {summary['model'].get('name')} {summary['model'].get('version')}",
        f"- input: `{summary['input']}` → output: `{summary['output']}`",
        f"- rows in: {summary['rows_in']}, rows out: {summary['rows_out']} "
        f"({_statuses(summary['statuses'])}); failed rows: {summary['failed_rows']}",
        f"- ids: {summary['ids']}",
        f"- since the last run: rows {summary['changes']['rows']}, chunks {summary['changes']['chunks']}",
        f"- decode: {summary['decode']}",
        f"- precision: {summary.get('precision')} (numerics {summary.get('numerics')})",
        *([f"- placeholders: {_placeholders(rate)}"] if (rate := summary.get("placeholders")) else []),
        f"- this run: {run.get('chunks_translated', 0)} chunks translated, {run.get('chunks_skipped', 0)} "
        f"skipped, {run.get('rows_per_second', 0)} rows/s",
        f"- manifest: `{summary['manifest']}`"])
