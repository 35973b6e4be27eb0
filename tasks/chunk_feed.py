"""Per-chunk progress from inside a task run that translates a batch of chunks.

One task run translates many chunks (``tasks.translate.run_chunks``), so the flow would otherwise hear
of them only when the whole batch ends. Each committed chunk's record is put on a *feed* the flow
drains while it waits: a queue in this process for the thread-pool runner, a ``distributed.Queue``
(through the scheduler) for a Dask cluster. On Dask a put is a round trip to the scheduler (~3 ms,
as long as committing the chunk), so a task sends its records in groups, at most every
``DASK_SEND_SECONDS``: progress stays per chunk, a second late at most. Records are small dicts of
numbers and strings. The feed is for progress only: what a run produced is counted from the markers
by verification.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Any

DASK_SEND_SECONDS = 0.5

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
        if self._dask is not None:  # each item is a group of records (``FeedWriter``)
            return [record for group in self._dask.get(batch=True) for record in group]
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


class FeedWriter:
    """A task's end of the feed ``name`` (None: no feed, e.g. ``task.fn()`` in tests): ``put`` a
    record per chunk; on a Dask worker they are sent in groups (``DASK_SEND_SECONDS``) and the rest
    when the writer closes."""

    def __init__(self, name: str | None):
        self._local = _LOCAL.get(name) if name is not None else None
        self._dask = None
        if name is not None and self._local is None:  # a Dask worker process: through the scheduler
            from distributed import Queue

            self._dask = Queue(name)
        self._pending: list[dict] = []
        self._sent_at = time.monotonic()

    def put(self, record: dict) -> None:
        if self._local is not None:  # the flow runs in this process (the thread-pool runner)
            self._local.put(record)
        elif self._dask is not None:
            self._pending.append(record)
            if time.monotonic() - self._sent_at >= DASK_SEND_SECONDS:
                self.flush()

    def flush(self) -> None:
        if self._dask is not None and self._pending:
            self._dask.put(self._pending)
            self._pending = []
        self._sent_at = time.monotonic()

    def __enter__(self) -> FeedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
