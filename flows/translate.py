"""Translate a Parquet corpus chunk by chunk: plan → translate each chunk → verify + manifest.

    python -m flows.translate --model URL --input URL --output URL [--beam 5] [--chunk-rows 2000]
                              [--workers N | --dask tcp://scheduler:8786]

Re-running the same command skips the committed chunks and finishes the rest.
"""

from __future__ import annotations

import os
import sys

import torch
from prefect import flow, unmapped
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.common import run_logger
from tasks.config import TranslateConfig
from tasks.translate import ChunkProgress, finalize, plan_translation, run_chunk


def default_workers() -> int:
    """One worker per GPU; on CPU one per 4 cores (each chunk's torch ops already use every core,
    so more threads mostly contend; a few still overlap reading and writing with compute)."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, min(4, (os.cpu_count() or 1) // 4))


@flow(name="s2s-translate", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def translate_flow(config: TranslateConfig) -> dict:
    """Translate ``config.input`` into ``config.output``; every input row becomes one output row."""
    planned = plan_translation(config)
    # A registry URL is resolved once, and with output_per_version so is the output directory.
    config = config.model_copy(update={"model": planned.model_url, "output": planned.output})
    progress = ChunkProgress(planned.plan, planned.pending, config.output)
    futures = run_chunk.map(planned.pending, config=unmapped(config),
                            plan_fingerprint=unmapped(planned.plan.fingerprint))
    errors = []
    for future in as_completed(futures):
        try:
            progress.update(future.result())
        except Exception as err:  # noqa: BLE001 - let the other chunks finish and commit first
            errors.append(err)
    if errors:
        run_logger().error("%d of %d chunks failed; the others are committed, so running the same "
                           "command again retries only the failed ones", len(errors), len(planned.pending))
        raise errors[0]
    return finalize(config, planned.plan, progress.summary())


def run_translation(config: TranslateConfig) -> dict:
    """Run the flow on the runner the config asks for: an existing Dask cluster or a thread pool."""
    if config.dask_address:
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(address=config.dask_address)
    else:
        runner = ThreadPoolTaskRunner(max_workers=config.workers or default_workers())
    return translate_flow.with_options(task_runner=runner)(config)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["translate", *sys.argv[1:]]))
