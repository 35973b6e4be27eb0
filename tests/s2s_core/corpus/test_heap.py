"""Freed C-heap memory goes back to the OS (glibc), as after reading thousands of Parquet footers."""

from __future__ import annotations

import threading

import psutil
import pytest

from s2s_core.corpus.heap import _malloc_trim, release_freed_memory

pytestmark = pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_memory_freed_in_a_thread_arena_is_returned():
    held: list[bytes] = []

    def allocate() -> None:  # in a thread: glibc serves it from a thread arena, as Arrow's I/O threads
        held.extend(bytes(1500) for _ in range(100_000))  # > 512 bytes: malloc, not pymalloc
        held.append(bytes(600))  # last, at the arena's top: plain free() cannot shrink it

    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
    del held[:-1]
    freed = _rss_mb()
    assert release_freed_memory()
    assert freed - _rss_mb() > 60  # of ~150 MB freed
