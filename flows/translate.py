"""Translate a corpus chunk by chunk: plan → translate batches of chunks → verify + manifest.

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
from tasks.chunk_feed import ChunkFeed
from tasks.common import run_logger
from tasks.config import TranslateConfig, with_overrides
from tasks.translate import ChunkProgress, finalize, plan_translation, record_skip, run_chunks


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
                                       "source_language": planned.source_language,
                                       "protect": planned.protect})
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


# Batches per worker slot that guided self-scheduling aims for: each new batch takes this share of the
# chunks still unsubmitted per slot, so batches start large (few task runs: orchestration per row does
# not grow with the corpus) and shrink to single chunks at the end (the workers finish together).
BATCHES_PER_SLOT = 4
# The least rows a batch holds (one default chunk's worth): a corpus cut into tiny chunks would
# otherwise end in a tail of one-chunk task runs, each costing more orchestration (~0.3 s on Dask) than
# its rows cost to translate. With the default 2,000-row chunks this is one chunk: no change.
MIN_BATCH_ROWS = 2000
FEED_POLL_SECONDS = 0.5  # how often the flow takes chunk records off the feed while batches run


def batch_sizes(chunks: int, slots: int, min_size: int = 1) -> list[int]:
    """Guided self-scheduling (Polychronopoulos & Kuck): batch ``i`` holds ``ceil(remaining /
    (BATCHES_PER_SLOT × slots))`` chunks, at least ``min_size`` but no more than the first batch (the
    last may hold fewer).
    O(slots × log(chunks)) task runs: 36 for 50,000 chunks on one worker, 250 on 8, 1,496 on 64 (with
    ``min_size`` 1); every chunk in exactly one batch, in corpus order."""
    share = BATCHES_PER_SLOT * max(1, slots)
    # Never above the first batch: a small corpus still gets BATCHES_PER_SLOT batches per slot.
    min_size = min(min_size, -(-chunks // share))
    sizes, remaining = [], chunks
    while remaining:
        size = min(remaining, max(1, min_size, -(-remaining // share)))
        sizes.append(size)
        remaining -= size
    return sizes


def min_batch_chunks(chunks: list[Chunk]) -> int:
    """The chunks a batch holds at least: ``MIN_BATCH_ROWS`` rows' worth, at the corpus's mean chunk size."""
    rows = sum(chunk.rows for chunk in chunks)
    return max(1, -(-MIN_BATCH_ROWS * len(chunks) // max(1, rows)))


def translate_chunks(runner: TaskRunner, chunks: list[Chunk], config: TranslateConfig, plan: JobPlan,
                     progress: ChunkProgress) -> None:
    """Run the chunks on ``runner`` in batches, one task run each (``batch_sizes``); raise the first
    failure once all other chunks have finished.

    The chunk stays the unit of commit, resume and progress: each committed chunk's record comes
    back on a feed (``tasks.chunk_feed``) as it commits, while its batch runs on. Two batches per
    worker slot are in flight (each worker has its next one queued), and each finished batch's
    future is let go at once, so the flow's memory does not grow with the corpus either.
    """
    slots = worker_slots(runner, config)
    sizes = iter(batch_sizes(len(chunks), slots, min_batch_chunks(chunks)))
    finished: queue.SimpleQueue[PrefectFuture] = queue.SimpleQueue()
    dask_client = None if isinstance(runner, ThreadPoolTaskRunner) else runner.client
    errors: list[BaseException] = []
    failed_chunks = 0
    with ChunkFeed(dask_client) as feed:
        shared = {"config": config, "plan_fingerprint": plan.fingerprint,
                  "pinned_numerics": plan.record["numerics"], "feed": feed.name}
        position = 0

        def submit_next() -> bool:
            nonlocal position
            size = next(sizes, None)
            if size is None:
                return False
            batch = chunks[position:position + size]
            position += size
            runner.submit(run_chunks, parameters={"chunks": batch, **shared}).add_done_callback(finished.put)
            note_task_runs()
            return True

        def take_feed() -> None:
            nonlocal failed_chunks
            for record in feed.drain():
                if "error" in record:
                    failed_chunks += 1
                else:
                    progress.update(record)

        in_flight = 0
        while in_flight < 2 * slots and submit_next():
            in_flight += 1
        while in_flight:
            try:
                future = finished.get(timeout=FEED_POLL_SECONDS)
            except queue.Empty:
                take_feed()
                continue
            in_flight -= 1
            try:
                forget_result(future.result())
            except Exception as err:  # noqa: BLE001 - let the other batches finish and commit first
                errors.append(err)
            take_feed()  # a batch's records are on the feed before its task run ends
            in_flight += submit_next()
    if errors:
        run_logger().error("%d of %d chunks failed; the others are committed, so running the same "
                           "command again retries only the failed ones", max(failed_chunks, len(errors)),
                           len(chunks))
        raise errors[0]


def forget_result(result: dict) -> None:
    """Drop the flow run's links from a consumed task result (and its items) to its task run.

    Prefect links every task result and its top-level items to the task run's state in the flow run
    context (``run_results``), so that passing one to another task records the dependency. Batch
    results are never passed on, and their links would stay for the whole run (~4 KB each).
    """
    context = FlowRunContext.get()
    links = getattr(context, "run_results", None)
    if not isinstance(links, dict):
        return
    for obj in (result, *result.keys(), *result.values()):
        links.pop(id(obj), None)


def worker_slots(runner: TaskRunner, config: TranslateConfig) -> int:
    """How many batches run at once: the thread pool's workers, or the Dask cluster's threads as the
    cluster is when the run starts."""
    if isinstance(runner, ThreadPoolTaskRunner):
        return thread_workers(config)
    return max(1, sum(runner.client.nthreads().values()))


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
