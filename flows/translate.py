"""Translate a Parquet corpus chunk by chunk: plan → translate each chunk → verify + manifest.

    python -m flows.translate --model URL --input URL --output URL [--beam 5] [--chunk-rows 2000]
                              [--workers N | --dask tcp://scheduler:8786]

Re-running the same command skips the committed chunks and finishes the rest.
"""

from __future__ import annotations

import os
import queue
import sys

import torch
from prefect import flow
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.states import Completed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows._exit import note_task_runs, settled_temporary_server
from s2s_core.corpus.files import Chunk
from s2s_core.corpus.plan import JobPlan
from s2s_core.corpus.verify import DamagedChunksError
from tasks.common import run_logger
from tasks.config import TranslateConfig, with_overrides
from tasks.translate import ChunkProgress, finalize, plan_translation, record_skip, run_chunk


def default_workers() -> int:
    """One worker per GPU; on CPU one per 4 cores (each chunk's torch ops already use every core,
    so more threads mostly contend; a few still overlap reading and writing with compute)."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, min(4, (os.cpu_count() or 1) // 4))


@flow(name="s2s-translate")
def translate_flow(config: TranslateConfig, overrides: list[str] | None = None) -> dict | State:
    """Translate ``config.input`` into ``config.output``; every input row becomes one output row.

    ``overrides`` (``key=value``, as ``--set``) change fields of ``config``, so a deployment run can
    change one setting without restating the whole config. Before a registry URL's first promotion
    the run is skipped (Completed, with the reason in its log and an artifact), not failed.
    """
    config = with_overrides(config, overrides)
    note_task_runs()  # each task run started is counted, for a clean exit of the temporary server
    planned = plan_translation(config)
    if planned is None:
        reason = f"skipped: no serving model yet (nothing has been promoted in {config.model})"
        return Completed(message=reason, data=record_skip(config, reason))
    # A registry URL is resolved once (with output_per_version, so is the output directory; without
    # --src-lang, the source language is the package's): every chunk uses the same.
    config = config.model_copy(update={"model": planned.model_url, "output": planned.output,
                                       "source_language": planned.source_language})
    progress = ChunkProgress(planned.plan, planned.pending, config.output)
    try:
        with chunk_runner(config) as runner:
            translate_chunks(runner, planned.pending, config, planned.plan, progress)
            try:
                note_task_runs()
                return finalize(config, planned.plan, progress.summary())
            except DamagedChunksError as err:
                # Committed parts found damaged (truncated, lost) were un-committed by the check:
                # translate them again now instead of failing every night until someone cleans up.
                run_logger().warning("%s", err)
                damaged = [c for c in planned.plan.chunks if c.id in set(err.chunk_ids)]
                progress.redo(damaged)
                translate_chunks(runner, damaged, config, planned.plan, progress)
                note_task_runs()
                return finalize(config, planned.plan, progress.summary())
    finally:
        progress.close()


def chunk_runner(config: TranslateConfig) -> TaskRunner:
    """Where the chunks run: the Dask scheduler at ``dask_address`` or ``workers`` threads.

    Chosen inside the flow, from its parameters, so that deployment runs honour them as the CLI does
    (a flow's own task runner is fixed when it is decorated).
    """
    if config.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=config.dask_address)
    return ThreadPoolTaskRunner(max_workers=thread_workers(config))


def thread_workers(config: TranslateConfig) -> int:
    """Threads of the thread-pool runner: ``workers``, or ``default_workers()``."""
    return config.workers or default_workers()


def translate_chunks(runner: TaskRunner, chunks: list[Chunk], config: TranslateConfig, plan: JobPlan,
                     progress: ChunkProgress) -> None:
    """Run the chunks on ``runner``; raise the first failure once all others have finished.

    Chunks are submitted a window at a time (``in_flight_limit``) and each finished one's future is
    let go at once: the flow holds a few futures, not one (with its state and result) per chunk, so
    its memory does not grow with the corpus.
    """
    shared = {"config": config, "plan_fingerprint": plan.fingerprint,
              "pinned_numerics": plan.record["numerics"]}
    todo = iter(chunks)
    finished: queue.SimpleQueue[PrefectFuture] = queue.SimpleQueue()

    def submit_next() -> bool:
        chunk = next(todo, None)
        if chunk is None:
            return False
        runner.submit(run_chunk, parameters={"chunk": chunk, **shared}).add_done_callback(finished.put)
        note_task_runs()
        return True

    limit = in_flight_limit(runner, config)
    in_flight = 0
    while in_flight < limit and submit_next():
        in_flight += 1
    errors = []
    while in_flight:
        future = finished.get()
        in_flight -= 1
        try:
            record = future.result()
            progress.update(record)
            forget_result(record)
        except Exception as err:  # noqa: BLE001 - let the other chunks finish and commit first
            errors.append(err)
        in_flight += submit_next()
    if errors:
        run_logger().error("%d of %d chunks failed; the others are committed, so running the same "
                           "command again retries only the failed ones", len(errors), len(chunks))
        raise errors[0]


def forget_result(result: dict) -> None:
    """Drop the flow run's links from a consumed chunk result (and its items) to the chunk's task run.

    Prefect links every task result and its top-level items to the task run's state in the flow run
    context (``run_results``), so that passing one to another task records the dependency. Chunk
    results are never passed on, and their links would keep ~4 KB per chunk for the whole run: 200 MB
    for a 100M-row corpus in 2,000-row chunks.
    """
    context = FlowRunContext.get()
    links = getattr(context, "run_results", None)
    if not isinstance(links, dict):
        return
    for obj in (result, *result.keys(), *result.values()):
        links.pop(id(obj), None)


def in_flight_limit(runner: TaskRunner, config: TranslateConfig) -> int:
    """How many chunks to keep submitted: two per worker thread (each has its next chunk queued), or
    per thread of the Dask cluster as it is when the run starts; at least 8."""
    if isinstance(runner, ThreadPoolTaskRunner):
        slots = thread_workers(config)
    else:
        slots = sum(runner.client.nthreads().values())
    return max(8, 2 * slots)


def run_translation(config: TranslateConfig) -> dict:
    """Run the flow (the chunks on the runner the config asks for: a Dask cluster or a thread pool).

    Against the temporary server, return once it has recorded every task run: stopped at exit while
    still behind (thousands of chunks), it would print a ``CancelledError`` traceback (flows/_exit.py).
    """
    with settled_temporary_server():
        return translate_flow(config)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["translate", *sys.argv[1:]]))
