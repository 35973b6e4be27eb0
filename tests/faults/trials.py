"""Seeded SIGKILL-and-resume trials of the translate and train flows, compared with a clean run.

Each trial runs the flow's command line in a subprocess (``tests.faults.killer``), kills it -9 once or
twice at a drawn moment (an exact file operation: a commit marker's link, a part's or checkpoint's
rename, a temporary's open; or a drawn wall-clock time), then runs the same command to completion in
this process and compares everything with an uninterrupted run. ``bench/faults.py`` runs many trials;
the tests run a few. A Prefect API must be configured (the test harness, or a loopback server).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import polars as pl
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples/tiny/pairs.tsv"
TINY = ROOT / "configs/tiny.yaml"


@dataclass(frozen=True)
class Moment:
    """When to kill: the n-th (1..most) audit ``event`` on a path containing ``pattern``, or a time."""

    name: str
    event: str | None  # None: a wall-clock moment
    pattern: str = ""
    most: int = 1


TRANSLATE_MOMENTS = (
    Moment("plan-pin", "os.link", "_plan.json"),
    Moment("part-temporary-opened", "open", "/.tmp-"),  # a part (or marker) half-written
    Moment("part-rename", "os.rename", "/part-", 12),  # part complete, not yet under its name
    Moment("marker-temporary-opened", "open", "/_done/.tmp-", 12),
    Moment("commit-link", "os.link", "/_done/", 12),  # part in place, marker about to appear
    Moment("chunk-index", "os.rename", "_chunks.parquet"),
    Moment("manifest", "os.rename", "manifest.json"),
    Moment("time", None),
)
TRAIN_MOMENTS = (
    Moment("prepare", "os.rename", "/data/", 4),
    Moment("tokenizer", "os.rename", "/tokenizer/", 3),
    Moment("checkpoint-temporary-opened", "open", "/checkpoints/.tmp-", 3),
    Moment("checkpoint-rename", "os.rename", "/checkpoints/", 3),
    Moment("package", "os.rename", "/models/", 5),
    Moment("report", "os.rename", "/reports/", 6),
    Moment("time", None),
)


@dataclass
class Tally:
    """What a set of trials did and found; every "must be zero" figure is a failure when not zero."""

    trials: int = 0
    kills: int = 0
    runs_not_killed: int = 0  # the drawn moment came after the run had finished
    faults_by_kind: Counter = field(default_factory=Counter)  # kill moments, damage kinds
    rows_lost: int = 0
    rows_duplicated: int = 0
    mismatches: int = 0  # rows (translate) or outputs (train) that differ from the clean run
    torn_objects: int = 0  # objects under final names that are unreadable or incomplete
    stale_temporaries: int = 0  # hidden .tmp- files a kill left behind (never under a final name)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "faults_by_kind": dict(sorted(self.faults_by_kind.items())),
                "seconds": round(self.seconds, 1)}

    @property
    def clean(self) -> bool:
        return not (self.rows_lost or self.rows_duplicated or self.mismatches or self.torn_objects)


def cli(args: list[str]) -> int:
    """``s2s ARGS`` in this process (its JSON summary is swallowed)."""
    from flows.cli import main

    with redirect_stdout(io.StringIO()):
        return main(args)


def run_killed(args: list[str], moment: Moment, rng: random.Random, time_window: float,
               timeout: float = 300) -> bool:
    """Run ``s2s ARGS`` in a subprocess and kill it -9 at a moment drawn from ``moment``; True if killed."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    env.pop("S2S_KILL_AT", None)
    if moment.event:
        env["S2S_KILL_AT"] = f"{moment.event}|{moment.pattern}|{rng.randint(1, moment.most)}"
    module = "flows.translate" if args[0] == "translate" else "flows.train"
    process = subprocess.Popen([sys.executable, "-m", "tests.faults.killer", module, *args[1:]], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        if moment.event:
            code = process.wait(timeout)
        else:
            try:
                code = process.wait(rng.uniform(0.5, time_window))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code == -signal.SIGKILL


def _trial(tally: Tally, args: list[str], moments: tuple[Moment, ...], rng: random.Random, index: int,
           time_window: float) -> None:
    """One trial: one or two kills (the first at moment ``index``, cycling), then a full run."""
    tally.trials += 1
    for k in range(1 if rng.random() < 0.6 else 2):
        moment = moments[index % len(moments)] if k == 0 else rng.choice(moments)
        if run_killed(args, moment, rng, time_window):
            tally.kills += 1
            tally.faults_by_kind[moment.name] += 1
        else:
            tally.runs_not_killed += 1
    assert cli(args) == 0, f"the run after the kill failed: s2s {' '.join(args)}"


# ---------------------------------------------------------------------------------------- translate
def tiny_corpus(directory: Path, rows: int = 240, files: int = 2, row_group_size: int = 16) -> Path:
    """``rows`` verses of the tiny corpus (unique ids) over ``files`` Parquet files."""
    frame = pl.read_csv(PAIRS, separator="\t", quote_char=None).select("id", "src").head(rows)
    return write_corpus(frame, directory, files, row_group_size)


def write_corpus(frame: pl.DataFrame, directory: Path, files: int = 2, row_group_size: int = 16) -> Path:
    """``frame`` split in order over ``files`` Parquet files with small row groups (many chunks)."""
    rows = frame.height
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [rows * i // files for i in range(files + 1)]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(frame.slice(a, b - a).to_arrow(), directory / f"part{i}.parquet",
                       row_group_size=row_group_size)
    return directory


def translate_args(model: str, corpus: Path, output: Path) -> list[str]:
    return ["translate", "--model", model, "--input", str(corpus), "--output", str(output), "--beam", "1",
            "--chunk-rows", "20", "--workers", "1"]


def read_parts(output: Path | str, fs=None) -> pl.DataFrame:
    """A verified output's rows in corpus order: its parts in the order its chunk index lists them
    (part names are content-addressed and do not sort in corpus order)."""
    fs = fs or fsspec.filesystem("file")
    parts = pl.read_parquet(fs.cat_file(f"{output}/_chunks.parquet"))["part"]
    return pl.concat([pl.read_parquet(fs.cat_file(f"{output}/{p}")) for p in parts])


def check_translation(tally: Tally, output: Path, reference: pl.DataFrame) -> None:
    """Compare a finished output with the clean run's rows; count torn objects and stale temporaries."""
    for path in [*output.glob("part-*.parquet"), *output.glob("_done/*.json"), output / "manifest.json"]:
        try:
            pq.read_metadata(path) if path.suffix == ".parquet" else json.loads(path.read_text())
        except Exception:  # noqa: BLE001 - any unreadable final object counts
            tally.torn_objects += 1
    tally.stale_temporaries += len(list(output.rglob(".tmp-*")))
    out = read_parts(output)
    ids, expected = out["id"].to_list(), reference["id"].to_list()
    tally.rows_lost += len(set(expected) - set(ids))
    tally.rows_duplicated += len(ids) - len(set(ids))
    if len(out) == len(reference):
        same = (out["id"] == reference["id"]) & (out["translation"] == reference["translation"]) \
            & (out["status"] == reference["status"]) & ((out["score"] - reference["score"]).abs() < 1e-6)
        tally.mismatches += int((~same).sum())
    else:
        tally.mismatches += abs(len(out) - len(reference))


def translate_trials(model: str, workdir: Path, trials: int, seed: int,
                     moments: tuple[Moment, ...] = TRANSLATE_MOMENTS) -> Tally:
    """``trials`` kill-and-resume trials of corpus translation with the tiny model package ``model``."""
    started = time.perf_counter()
    corpus = tiny_corpus(workdir / "corpus")
    clean = workdir / "clean"
    t0 = time.perf_counter()
    assert cli(translate_args(model, corpus, clean)) == 0
    reference, window = read_parts(clean), time.perf_counter() - t0 + 6  # + interpreter start-up
    tally, rng = Tally(), random.Random(seed)
    for i in range(trials):
        output = workdir / f"trial-{i:03d}"
        _trial(tally, translate_args(model, corpus, output), moments, rng, i, window)
        check_translation(tally, output, reference)
    tally.seconds = time.perf_counter() - started
    return tally


def torn_trials(model: str, workdir: Path, trials: int, seed: int) -> Tally:
    """Damage committed parts of a finished output after the fact (cut short, emptied, lost); the next
    run must find them, translate them again and end with the clean output."""
    import shutil

    started = time.perf_counter()
    corpus = tiny_corpus(workdir / "corpus")
    clean = workdir / "clean"
    assert cli(translate_args(model, corpus, clean)) == 0
    reference, rng, tally = read_parts(clean), random.Random(seed), Tally()
    for i in range(trials):
        output = workdir / f"trial-{i:03d}"
        shutil.copytree(clean, output)
        tally.trials += 1
        for part in rng.sample(sorted(output.glob("part-*.parquet")), rng.randint(1, 3)):
            kind = rng.choice(("truncated", "emptied", "lost"))
            if kind == "truncated":
                part.write_bytes(part.read_bytes()[: rng.randrange(1, part.stat().st_size)])
            elif kind == "emptied":
                part.write_bytes(b"")
            else:
                part.unlink()
            tally.faults_by_kind[kind] += 1
        assert cli(translate_args(model, corpus, output)) == 0
        check_translation(tally, output, reference)
    tally.seconds = time.perf_counter() - started
    return tally


# ---------------------------------------------------------------------------------------- train
def train_args(store: Path, extra: list[str] = ()) -> list[str]:
    from tests.flows.conftest import FAST

    sets = [*FAST, f"data.train={PAIRS}", *extra]
    return ["train", str(TINY), "--store", str(store), *[x for s in sets for x in ("--set", s)]]


def train_outputs(store: Path) -> dict:
    """What a finished training run must reproduce exactly: weights, test scores, test translations."""
    (package,) = store.glob("models/tiny/*/model.safetensors")
    (report,) = store.glob("runs/*/reports/report.json")
    (translations,) = store.glob("runs/*/reports/test.translations.parquet")
    scores = {name: {m: s["score"] for m, s in ts["scores"].items()}
              for name, ts in json.loads(report.read_text())["test_sets"].items()}
    return {"weights": hashlib.sha256(package.read_bytes()).hexdigest(), "scores": scores,
            "translations": pl.read_parquet(translations)["hyp"].to_list()}


def check_training(tally: Tally, store: Path, reference: dict) -> None:
    from s2s_core.inference.package import load_package
    from s2s_core.training.checkpoint import load_checkpoint

    for checkpoint in store.glob("runs/*/checkpoints/*.pt"):
        try:
            load_checkpoint(str(checkpoint))
        except Exception:  # noqa: BLE001
            tally.torn_objects += 1
    for package in store.glob("models/tiny/*"):
        try:
            load_package(str(package))
        except Exception:  # noqa: BLE001
            tally.torn_objects += 1
    tally.stale_temporaries += len(list(store.rglob(".tmp-*")))
    outputs = train_outputs(store)
    tally.mismatches += sum(outputs[k] != reference[k] for k in reference)


def train_trials(workdir: Path, trials: int, seed: int, moments: tuple[Moment, ...] = TRAIN_MOMENTS,
                 clean_store: Path | None = None) -> Tally:
    """``trials`` kill-and-resume trials of the tiny train-and-evaluate flow.

    ``clean_store``: a store where ``train_args`` already ran uninterrupted (else it runs here first).
    """
    started = time.perf_counter()
    t0 = time.perf_counter()
    if clean_store is None:
        clean_store = workdir / "clean"
        assert cli(train_args(clean_store)) == 0
    reference, window = train_outputs(clean_store), time.perf_counter() - t0 + 8
    tally, rng = Tally(), random.Random(seed)
    for i in range(trials):
        store = workdir / f"trial-{i:03d}"
        _trial(tally, train_args(store), moments, rng, i, window)
        check_training(tally, store, reference)
    tally.seconds = time.perf_counter() - started
    return tally
