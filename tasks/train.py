"""train: run the core trainer as a task (in process, or as a ``torchrun`` launch of several
processes); resumes from the run's last checkpoint after a crash; writes the model package."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from s2s_core.device import resolve_device
from s2s_core.inference.calibration import confidence_threshold
from s2s_core.inference.package import load_tokenizers, save_package
from s2s_core.inference.translator import Translator
from s2s_core.model.seq2seq import ModelConfig, Seq2Seq, build_model
from s2s_core.storage import Store
from s2s_core.text.prepare import read_parquet
from s2s_core.text.spans import DEFAULT_RULES
from s2s_core.text.tokenizer import Tokenizers
from s2s_core.training.checkpoint import BEST, LAST, read_checkpoint
from s2s_core.training.config import TrainConfig
from s2s_core.training.history import brief
from s2s_core.training.state import TrainState, budget_spent
from tasks.common import IO_RETRIES, artifact_key, run_logger
from tasks.config import PipelineConfig
from tasks.layout import RunLayout, model_url
from tasks.progress import ProgressBar
from tasks.train_worker import EVENT_PREFIX, TrainingJob, run_job


def progress_percent(config: TrainConfig, step: int, elapsed_seconds: float, batches_per_epoch: int) -> float:
    """How far training is, by whichever stop condition is closest (the share the budget-aware
    schedules decay by)."""
    epoch, batch = divmod(step, batches_per_epoch) if batches_per_epoch else (0, 0)
    state = TrainState(step=step, epoch=epoch, batch_in_epoch=batch, elapsed_seconds=elapsed_seconds)
    return round(100 * budget_spent(config, state, batches_per_epoch), 1)


class TrainProgress:
    """Turns trainer events into Prefect log lines, a progress artifact and, on a terminal, a live bar."""

    def __init__(self, config: TrainConfig, run_id: str):
        self.config = config
        self.logger = run_logger()
        self.batches_per_epoch = 0
        self.resumed_from: int | None = None
        self.artifact = create_progress_artifact(0.0, key=artifact_key(run_id, "train-progress"),
                                                 description=f"training {run_id}")
        # The budget's clock: the latest record's elapsed seconds, then this process's clock since.
        self.elapsed, self.clock = 0.0, time.monotonic()
        self.latest = ""
        # Log lines come every `log_every` steps anyway: the bar adds nothing but itself.
        self.bar = ProgressBar("training", 100, "%", self.logger, every=None)

    def close(self) -> None:
        self.bar.close()

    def _move_bar(self, step: int) -> None:
        elapsed = self.elapsed + time.monotonic() - self.clock
        self.bar.update(progress_percent(self.config, step, elapsed, self.batches_per_epoch),
                        description=f"training step {step}{self.latest}")

    def __call__(self, kind: str, record: dict) -> None:
        if kind == "model":
            self.logger.info("model: %d parameters, %s, %s attention", record["parameters"],
                             record["rnn_type"], record["attention"])
            if record["skipped_pairs"]:
                self.logger.warning("%d training pairs exceed the model's length limits and are skipped",
                                    record["skipped_pairs"])
        elif kind == "resume":
            self.resumed_from = record["step"]
            self.elapsed, self.clock = record["elapsed_seconds"], time.monotonic()
            self.logger.info("resuming from checkpoint at step %d (epoch %d)",
                             record["step"], record["epoch"])
        elif kind == "start":
            # In data-parallel training each step consumes one batch per process.
            self.batches_per_epoch = record["batches_per_epoch"] // record["processes"]
            self.logger.info("training on %d pairs, %s × %d process(es), %d steps per epoch",
                             record["examples"], record["device"], record["processes"],
                             self.batches_per_epoch)
        elif kind in ("log", "eval"):
            self.logger.info("step %d epoch %d | %s", record["step"], record["epoch"], brief(record))
            update_progress_artifact(self.artifact, progress_percent(
                self.config, record["step"], record["elapsed_seconds"], self.batches_per_epoch))
            self.elapsed, self.clock = record["elapsed_seconds"], time.monotonic()
            self.latest = f" | {brief(record)}"
            self._move_bar(record["step"])
        elif kind == "step":
            self._move_bar(record["step"])
        elif kind == "end":
            update_progress_artifact(self.artifact, 100.0)
            self.bar.update(100.0)
            self.close()
            self.logger.info("training stopped: %s after %d steps; best dev BLEU %.2f at step %d",
                             record["stop_reason"], record["step"], record["best_bleu"], record["best_step"])


def launch_torchrun(job: TrainingJob, processes: int, on_event: TrainProgress) -> None:
    """Run the job as ``processes`` ranks under torchrun, relaying their output as it comes."""
    with tempfile.TemporaryDirectory(prefix="s2s-torchrun-") as workdir:
        job_file = Path(workdir, "job.json")
        job_file.write_text(job.to_json(), encoding="utf-8")
        # --tee 3: every rank's stdout and stderr reach our pipe, each line tagged with its rank
        # (the copies torchrun keeps go to a log dir of ours, removed with it).
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={processes}", "--tee", "3", "--log-dir", str(Path(workdir, "logs")),
                   "-m", "tasks.train_worker", str(job_file)]
        on_event.logger.info("launching %s", " ".join(command))
        tail: deque[str] = deque(maxlen=30)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               **job.storage_environment()}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) as process:
            relay_output(process.stdout, on_event, on_event.logger, tail)
            code = process.wait()
    if code != 0:
        raise RuntimeError(f"torchrun training failed with exit code {code}:\n" + "\n".join(tail))


# How torchrun --tee tags a worker's line: "[<role><local rank>]:", e.g. "[default1]:...".
_RANK_TAG = re.compile(r"\[[A-Za-z_]*?(\d+)\]:")


def relay_output(lines: Iterable[str], on_event: Callable[[str, dict], None],
                 logger: logging.Logger | logging.LoggerAdapter, tail: deque[str]) -> None:
    """Turn torchrun's output into events (rank 0's ``S2S_EVENT`` lines) and log lines (all others).

    Log lines name their rank (``[rank 1] ...``; torchrun's own lines are ``[torchrun] ...``) and the
    latest are kept in ``tail`` for the error message of a failed launch.
    """
    for raw in lines:
        line = raw.rstrip()
        tag = _RANK_TAG.match(line)
        text = line[tag.end():] if tag else line
        if text.startswith(EVENT_PREFIX):
            event = json.loads(text[len(EVENT_PREFIX):])
            on_event(event["kind"], event["record"])
        elif text.strip():
            message = f"[rank {tag.group(1)}] {text}" if tag else f"[torchrun] {text}"
            logger.info("%s", message)
            tail.append(message)


# Retried on transient storage errors like every I/O task: a retry resumes from the last checkpoint
# exactly (weights, optimizer, schedule, RNG, data position), so it finishes as an unbroken run would.
@task(name="train", **IO_RETRIES)
def train_model(config: PipelineConfig, data: dict, tokenizer_url: str, layout: RunLayout,
                warm_start: str | None = None) -> dict:
    """Train (or resume) and write the model package with the best dev-BLEU weights; ``warm_start``:
    the package whose weights a fresh start begins from."""
    job = TrainingJob(model=config.model.to_dict(), train=asdict(config.train), tokenizer_url=tokenizer_url,
                      train_url=data["train"], dev_url=data["dev"], checkpoint_dir=layout.checkpoints,
                      logs_dir=layout.logs, storage_options=config.storage_options,
                      source_language=config.data.source_language, warm_start=warm_start)
    progress = TrainProgress(config.train, layout.run_id)
    try:
        if config.distributed.processes > 1:
            launch_torchrun(job, config.distributed.processes, progress)
        else:
            run_job(job, progress)
    finally:
        progress.close()
    return write_package(config, layout, tokenizer_url, data, progress.resumed_from, warm_start)


def calibrate_flags(config: PipelineConfig, model: Seq2Seq, weights: dict, tokenizers: Tokenizers,
                    dev_url: str) -> dict | None:
    """The ``low_confidence`` threshold of these weights, read off the dev set as evaluation decodes
    (``calibration``); None (the defaults stay) when the dev set is too small to tell."""
    model.load_state_dict(weights, strict=False)  # tied aliases are filled by their owner
    dev = read_parquet(dev_url, config.storage_options, columns=["src"])["src"].to_list()
    translator = Translator(model.eval(), tokenizers, resolve_device(config.train.device),
                            language=config.data.source_language,
                            protect=DEFAULT_RULES if tokenizers.config.placeholders else None)
    started = time.monotonic()
    thresholds = confidence_threshold(translator, dev, config.evaluate.decode)
    if thresholds is None:
        run_logger().info("quality flags: %d dev rows are too few to calibrate low_confidence; the "
                          "default threshold stays", len(dev))
    else:
        run_logger().info("quality flags: low_confidence below a mean token log-prob of %.3f (the least "
                          "confident %d %% of %d dev rows, %.0f s)", thresholds["min_mean_log_prob"],
                          round(100 * thresholds["calibration"]["share"]), thresholds["calibration"]["rows"],
                          time.monotonic() - started)
    return thresholds


def write_package(config: PipelineConfig, layout: RunLayout, tokenizer_url: str, data: dict,
                  resumed_from: int | None, warm_start: str | None = None) -> dict:
    """Package the best checkpoint's weights (the last one when there was no dev evaluation)."""
    opts = config.storage_options
    checkpoints = Store(layout.checkpoints, opts)
    last = read_checkpoint(checkpoints, LAST)
    weights = read_checkpoint(checkpoints, BEST)["model"] if checkpoints.exists(BEST) else last["model"]
    tokenizers = load_tokenizers(tokenizer_url, opts)
    model = build_model(ModelConfig.from_dict(last["model_config"]))
    state = last["state"]
    thresholds = calibrate_flags(config, model, weights, tokenizers, data["dev"])
    url = model_url(config.store, config.name, config.resolved_version)
    save_package(url, model, tokenizers, weights=weights, storage_options=opts,
                 metrics={"history": last["history"], "state": state, "prepare": data.get("report", {})},
                 extra={"name": config.name, "version": config.resolved_version, "run_id": layout.run_id,
                        "source_language": config.data.source_language, "warm_start": warm_start,
                        **({"flag_thresholds": thresholds} if thresholds else {})})
    run_logger().info("model package written to %s", url)
    return {"model": url, "steps": state["step"], "best_dev_bleu": state["best_bleu"],
            "stop_reason": state["stop_reason"], "resumed_from_step": resumed_from, "warm_start": warm_start}
