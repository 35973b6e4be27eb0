"""Give the C heap's freed memory back to the operating system (glibc's ``malloc_trim``).

Parquet footers are decoded into many small C++ allocations (~2 KB a row group), on Arrow's I/O
threads, so in glibc's per-thread arenas. Freed, they stay resident: glibc returns an arena's memory
only from its top, and never from a thread arena on its own. Reading the footers of 100 files of 500
row groups left the planning process ~93 MB larger for the whole run; one ``malloc_trim(0)`` (all
arenas, ~10 ms) gives it back. Elsewhere (macOS, musl) this does nothing: their allocators differ.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed_memory() -> bool:
    """Return freed heap memory to the OS where the C library can; whether it could.

    Collects garbage first: a ``ParquetFile`` sits in a reference cycle, so its footer is freed only
    by the cycle collector (~0.1 s with torch loaded; once per plan)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    gc.collect()
    trim(0)
    return True
