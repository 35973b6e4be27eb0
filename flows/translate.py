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

from s2s_core.corpus.files import Chunk
from s2s_core.corpus.plan import JobPlan
from s2s_core.corpus.verify import DamagedChunksError
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
    translate_chunks(planned.pending, config, planned.plan, progress)
    try:
        return finalize(config, planned.plan, progress.summary())
    except DamagedChunksError as err:
        # Committed parts found damaged (truncated, lost) were un-committed by the check: translate
        # them again now instead of failing every night until someone cleans up by hand.
        run_logger().warning("%s", err)
        damaged = [c for c in planned.plan.chunks if c.id in set(err.chunk_ids)]
        progress.redo(damaged)
        translate_chunks(damaged, config, planned.plan, progress)
        return finalize(config, planned.plan, progress.summary())


def translate_chunks(chunks: list[Chunk], config: TranslateConfig, plan: JobPlan, progress: ChunkProgress
                     ) -> None:
    """Run the chunks on the flow's task runner; raise the first failure once all others have finished."""
    futures = run_chunk.map(chunks, config=unmapped(config), plan_fingerprint=unmapped(plan.fingerprint),
                            pinned_numerics=unmapped(plan.record["numerics"]))
    errors = []
    for future in as_completed(futures):
        try:
            progress.update(future.result())
        except Exception as err:  # noqa: BLE001 - let the other chunks finish and commit first
            errors.append(err)
    if errors:
        run_logger().error("%d of %d chunks failed; the others are committed, so running the same "
                           "command again retries only the failed ones", len(errors), len(chunks))
        raise errors[0]


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
