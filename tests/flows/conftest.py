"""A tiny train-and-evaluate run shared by the flow and CLI tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.logging.configuration import ensure_logging_setup

from tasks.config import PipelineConfig, load_config

# Prefect binds its console log handler to the sys.stderr of the moment its logging is set up. Done
# here, at collection, that is pytest's session-long capture; done inside a test (the CLI imports
# Prefect lazily), it would be that test's capsys stream, closed once the test ends.
ensure_logging_setup()

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
FAST = ["train.max_steps=30", "train.eval_every=15", "train.log_every=5", "evaluate.n_bootstrap=50",
        "evaluate.heatmaps=1", "evaluate.decode.beam_size=2", "evaluate.decode.max_len_extra=5",
        "model.max_tgt_len=60"]


def tiny_config(store: str, extra: list[str] | None = None, **fields) -> PipelineConfig:
    config = load_config(TINY, [*FAST, f"data.train={ROOT / 'examples/tiny/pairs.tsv'}", *(extra or [])],
                         store=store)
    return config.model_copy(update=fields) if fields else config


@pytest.fixture(scope="session")
def tiny_run(prefect_harness, tmp_path_factory):
    from flows.train import train_flow

    config = tiny_config(str(tmp_path_factory.mktemp("store")))
    return config, train_flow(config)


def run_flow_until_killed(args: list[str], ready: Callable[[], bool], what: str,
                          timeout: float = 240, poll: float = 0.1) -> None:
    """Run ``python -m <args>`` against the test harness's API and SIGKILL it once ``ready()``.

    The process runs in its own session so the kill takes its children too, as a preemption would.
    """
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"the flow ended before {what}"
            assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
            time.sleep(poll)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
