"""Per-chunk progress from inside a task run that translates a batch of chunks.

One task run translates many chunks (``tasks.translate.run_chunks``), so the flow would otherwise hear
of them only when the whole batch ends. Each committed chunk's record is put on a *feed* the flow
drains while it waits: a queue in this process for the thread-pool runner, a ``distributed.Queue``
(through the scheduler) for a Dask cluster. Records are small dicts of numbers and strings. The feed
is for progress only: what a run produced is counted from the markers by verification.
"""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Any

_LOCAL: dict[str, queue.SimpleQueue] = {}  # feeds of flows running in this process
_LOCK = threading.Lock()


class ChunkFeed:
    """The flow's end of a feed: ``name`` goes to the tasks, ``drain()`` takes what they put."""

    def __init__(self, dask_client: Any | None = None):
        self.name = f"s2s-chunks-{uuid.uuid4().hex}"
        self._dask = None
        if dask_client is not None:
            from distributed import Queue

            self._dask = Queue(self.name, client=dask_client)
        else:
            with _LOCK:
                _LOCAL[self.name] = queue.SimpleQueue()

    def drain(self) -> list[dict]:
        """Every record put since the last drain (never blocks)."""
        if self._dask is not None:
            return list(self._dask.get(batch=True))
        local = _LOCAL[self.name]
        records = []
        while True:
            try:
                records.append(local.get_nowait())
            except queue.Empty:
                return records

    def close(self) -> None:
        with _LOCK:
            _LOCAL.pop(self.name, None)

    def __enter__(self) -> ChunkFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish(name: str | None, record: dict) -> None:
    """Put a chunk's record on the feed ``name`` (a no-op without one, e.g. ``task.fn()`` in tests)."""
    if name is None:
        return
    local = _LOCAL.get(name)
    if local is not None:  # the flow runs in this process (the thread-pool runner)
        local.put(record)
        return
    from distributed import Queue

    Queue(name).put(record)  # a Dask worker process: through the scheduler
