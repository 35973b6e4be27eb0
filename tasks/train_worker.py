"""Runs one training job: in the task's own process, or as each rank of a ``torchrun`` launch.

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m tasks.train_worker JOB.json

Kept free of Prefect imports so every rank starts fast; rank 0 reports trainer events on stdout
as ``S2S_EVENT {json}`` lines, which the train task turns into logs and a progress artifact. Any
other output of any rank goes into the task's log as it is.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from s2s_core.inference.package import load_tokenizers
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.model.seq2seq import ModelConfig, build_model, count_parameters
from s2s_core.storage import Store, reveal
from s2s_core.text.prepare import read_parquet
from s2s_core.training.checkpoint import LAST
from s2s_core.training.config import TrainConfig
from s2s_core.training.data import make_examples
from s2s_core.training.distributed import ProcessGroup, process_group_from_env
from s2s_core.training.state import TrainState
from s2s_core.training.trainer import Trainer
from s2s_core.training.warm_start import load_warm_start

EVENT_PREFIX = "S2S_EVENT "
STORAGE_OPTIONS_ENV = "S2S_TRAIN_STORAGE_OPTIONS"


@dataclass
class TrainingJob:
    """Everything a training process needs, as plain JSON (URLs, not data)."""

    model: dict
    train: dict
    tokenizer_url: str
    train_url: str
    dev_url: str
    checkpoint_dir: str
    logs_dir: str  # the history goes to train.jsonl in it
    storage_options: dict[str, Any] = field(default_factory=dict)
    source_language: str = DEFAULT_LANGUAGE  # sentence rules for over-long dev inputs
    warm_start: str | None = None  # a package whose weights a fresh start begins from

    def to_json(self) -> str:
        """The job for the ranks' job file: without its storage options, which may hold credentials
        (they travel in the ranks' environment, ``storage_environment``, never in a file)."""
        return json.dumps({**asdict(self), "storage_options": {}})

    def storage_environment(self) -> dict[str, str]:
        return {STORAGE_OPTIONS_ENV: json.dumps(reveal(self.storage_options))}

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str] = os.environ) -> TrainingJob:
        job = cls(**json.loads(text))
        if STORAGE_OPTIONS_ENV in environ:
            job.storage_options = json.loads(environ[STORAGE_OPTIONS_ENV])
        return job


def run_job(job: TrainingJob, on_event: Callable[[str, dict], None],
            group: ProcessGroup | None = None) -> TrainState:
    """Build the trainer from the job and train (resuming from the last checkpoint if any)."""
    opts = job.storage_options
    tokenizers = load_tokenizers(job.tokenizer_url, opts)
    model_config = ModelConfig.from_dict(job.model).with_vocab(tokenizers.src.vocab_size,
                                                                tokenizers.tgt.vocab_size)
    train_config = TrainConfig.from_dict(job.train)
    train, dev = read_parquet(job.train_url, opts), read_parquet(job.dev_url, opts)
    examples, skipped = make_examples(tokenizers, train["src"].to_list(), train["tgt"].to_list(),
                                      model_config.max_src_len, model_config.max_tgt_len)
    torch.manual_seed(train_config.seed)  # the same job gives the same initial weights on every rank
    model = build_model(model_config)
    checkpoints = Store(job.checkpoint_dir, opts)
    if job.warm_start and not checkpoints.exists(LAST):  # a resumed run has its own weights
        load_warm_start(model, job.warm_start, opts)
    on_event("model", {"parameters": count_parameters(model), "skipped_pairs": skipped,
                       "rnn_type": model_config.rnn_type, "attention": model_config.attention})
    trainer = Trainer(model, tokenizers, train_config, examples, dev["src"].to_list(), dev["tgt"].to_list(),
                      checkpoints=checkpoints, on_event=on_event, group=group,
                      logs=Store(job.logs_dir, opts), source_language=job.source_language)
    return trainer.fit(resume=True)


def print_event(kind: str, record: dict) -> None:
    if kind != "step":
        print(EVENT_PREFIX + json.dumps({"kind": kind, "record": record}, default=str), flush=True)


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as f:
        job = TrainingJob.from_json(f.read())
    with process_group_from_env() as group:
        # One line per rank: the train task relays every rank's output into its log, tagged with the rank.
        print(f"process {group.rank} of {group.world_size} started (pid {os.getpid()})", flush=True)
        run_job(job, print_event if group.is_main else (lambda kind, record: None), group)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
