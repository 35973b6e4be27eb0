"""train: run the core trainer as a task; resumes from the run's last checkpoint after a crash."""

from __future__ import annotations

import json
from typing import Any

import torch
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from s2s_core import storage
from s2s_core.model import build_model, count_parameters
from s2s_core.package import load_tokenizers, save_package
from s2s_core.train import TrainConfig, Trainer, TrainState, make_examples
from tasks.common import read_parquet, run_logger
from tasks.config import PipelineConfig
from tasks.layout import RunLayout, model_url


def progress_percent(config: TrainConfig, state: dict, batches_per_epoch: int) -> float:
    """How far training is, by whichever stop condition is closest."""
    fractions = []
    if config.max_steps:
        fractions.append(state["step"] / config.max_steps)
    if config.max_epochs:
        fractions.append(state["step"] / (config.max_epochs * batches_per_epoch))
    if config.max_minutes:
        fractions.append(state["elapsed_seconds"] / (config.max_minutes * 60))
    return round(100 * min(1.0, max(fractions, default=0.0)), 1)


class TrainProgress:
    """Streams trainer events to the Prefect log, a progress artifact and ``logs/train.jsonl``."""

    def __init__(self, trainer: Trainer, layout: RunLayout, storage_options: dict[str, Any]):
        self.trainer, self.layout, self.opts = trainer, layout, storage_options
        self.logger = run_logger()
        self.batches_per_epoch = len(trainer.epoch_batches(0))
        self.artifact = create_progress_artifact(0.0, key=_artifact_key(layout.run_id, "train-progress"),
                                                 description=f"training {layout.run_id}")

    def __call__(self, kind: str, record: dict) -> None:
        if kind == "step":
            return
        if kind == "resume":
            self.logger.info("resuming from checkpoint at step %d (epoch %d)",
                             record["step"], record["epoch"])
            return
        if kind in ("log", "eval"):
            self.logger.info("step %d epoch %d | %s", record["step"], record["epoch"], _brief(record))
            state = {"step": record["step"], "elapsed_seconds": record["elapsed_seconds"]}
            update_progress_artifact(self.artifact, progress_percent(
                self.trainer.config, state, self.batches_per_epoch))
        if kind in ("eval", "end"):
            lines = "\n".join(json.dumps(r, default=str) for r in self.trainer.history)
            storage.write_text(storage.join(self.layout.logs, "train.jsonl"), lines + "\n", **self.opts)
        if kind == "end":
            update_progress_artifact(self.artifact, 100.0)
            self.logger.info("training stopped: %s after %d steps; best dev BLEU %.2f at step %d",
                             record["stop_reason"], record["step"], record["best_bleu"], record["best_step"])


@task(name="train")
def train_model(config: PipelineConfig, data: dict, tokenizer_url: str, layout: RunLayout) -> dict:
    """Train (or resume) and write the model package with the best dev-BLEU weights."""
    logger = run_logger()
    opts = config.storage_options
    tokenizers = load_tokenizers(tokenizer_url, opts)
    model_config = config.model.with_vocab(tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    train, dev = read_parquet(data["train"], opts), read_parquet(data["dev"], opts)
    examples, skipped = make_examples(tokenizers, train["src"].to_list(), train["tgt"].to_list(),
                                      model_config.max_src_len, model_config.max_tgt_len)
    if skipped:
        logger.warning("%d training pairs exceed the model's length limits (%d/%d tokens) and are skipped",
                       skipped, model_config.max_src_len, model_config.max_tgt_len)
    torch.manual_seed(config.train.seed)  # the same config gives the same initial weights
    model = build_model(model_config)
    trainer = Trainer(model, tokenizers, config.train, examples, dev["src"].to_list(), dev["tgt"].to_list(),
                      checkpoint_dir=layout.checkpoints, storage_options=opts)
    trainer.on_event = TrainProgress(trainer, layout, opts)
    logger.info("model: %d parameters, %s encoder ×%d, %s attention; %d training pairs on %s",
                count_parameters(model), model_config.rnn_type, model_config.enc_layers,
                model_config.attention, len(examples), trainer.device)
    resumed_from = trainer.state.step if trainer.resume() else None
    state: TrainState = trainer.fit(resume=False)
    url = model_url(config.store, config.name, config.resolved_version)
    save_package(url, model, tokenizers, weights=trainer.best_weights(), storage_options=opts,
                 metrics={"history": trainer.history, "state": vars(state), "skipped_pairs": skipped,
                          "prepare": data.get("report", {})},
                 extra={"name": config.name, "version": config.resolved_version, "run_id": layout.run_id})
    logger.info("model package written to %s", url)
    return {"model": url, "steps": state.step, "best_dev_bleu": state.best_bleu,
            "stop_reason": state.stop_reason, "resumed_from_step": resumed_from}


def _artifact_key(run_id: str, suffix: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    clean = "".join(c if c.isalnum() else "-" for c in run_id.lower())
    return f"{clean}-{suffix}"[:100]


def _brief(record: dict) -> str:
    keys = {"loss": "loss {:.3f}", "tokens_per_second": "{:.0f} tok/s", "dev_bleu": "dev BLEU {:.2f}",
            "dev_chrf": "chrF {:.2f}", "lr": "lr {:.2e}"}
    return ", ".join(fmt.format(record[k]) for k, fmt in keys.items() if k in record)
