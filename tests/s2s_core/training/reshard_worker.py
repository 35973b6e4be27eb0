"""One rank of a small data-parallel training run (``torchrun ... -m tests.s2s_core.training.reshard_worker
CHECKPOINTS MAX_STEPS``): resumes from CHECKPOINTS, trains to MAX_STEPS, rank 0 prints the state as JSON."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import torch

from s2s_core.model.seq2seq import build_model
from s2s_core.storage import Store
from s2s_core.training.config import TrainConfig
from s2s_core.training.distributed import process_group_from_env
from s2s_core.training.trainer import Trainer
from tests.s2s_core.conftest import reverse_examples, reverse_model_config
from tests.s2s_core.synthetic import reverse_tokenizers

EXAMPLES = 400  # about 20 batches an epoch
CONFIG = dict(max_tokens=200, lr=2e-3, warmup_steps=5, eval_every=0, checkpoint_every=1, log_every=0,
              patience=None, seed=11)


def trainer(checkpoints: str, max_steps: int, group=None) -> Trainer:
    tokenizers = reverse_tokenizers()
    torch.manual_seed(0)
    model = build_model(reverse_model_config(tokenizers))
    examples = reverse_examples(tokenizers, EXAMPLES, seed=3)
    return Trainer(model, tokenizers, TrainConfig(max_steps=max_steps, **CONFIG), examples,
                   checkpoints=Store(checkpoints), group=group)


if __name__ == "__main__":
    with process_group_from_env() as group:
        state = trainer(sys.argv[1], int(sys.argv[2]), group).fit()
        if group.is_main:
            print("STATE " + json.dumps(asdict(state)), flush=True)
