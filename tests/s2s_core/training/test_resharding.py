"""Resuming with another process count re-shards the epoch's remaining batches (never indexes past it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.s2s_core.training.reshard_worker import trainer

ROOT = Path(__file__).resolve().parents[3]


def torchrun(processes: int, checkpoints: Path, max_steps: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "tests.s2s_core.training.reshard_worker", str(checkpoints), str(max_steps)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("STATE ")]
    return json.loads(line[len("STATE "):])


def test_resume_with_more_then_fewer_processes_continues_from_the_same_position(tmp_path):
    first = trainer(str(tmp_path), max_steps=1)
    batches = len(first.data.epoch_batches(0))
    assert len(first.data.epoch_batches(1)) >= 8
    # One process to the last batch of epoch 0: one batch is left, too few for two processes.
    state = trainer(str(tmp_path), max_steps=batches - 1).fit()
    assert (state.epoch, state.batch_in_epoch) == (0, batches - 1)

    state = torchrun(2, tmp_path, max_steps=batches + 2)  # 3 steps of 2 batches, from a new epoch
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (batches + 2, 1, 6)

    state = trainer(str(tmp_path), max_steps=batches + 4).fit()  # back to one process: 2 batches on
    assert (state.step, state.epoch, state.batch_in_epoch) == (batches + 4, 1, 8)
