"""A process that writes (and so compacts) translation memory entries: the concurrent-writers test runs two.

    python -m tests.s2s_core.corpus.memory_writer DIRECTORY WRITER BATCHES ROWS
"""

from __future__ import annotations

import sys

import pyarrow as pa

from s2s_core.corpus.memory import KEY, KEY_TYPE, TranslationMemory, text_key
from s2s_core.storage import Store

PARTITIONS = 2
FANOUT = 3


def entries(texts: list[str]) -> pa.Table:
    """Entries whose values follow from the text, so every copy of an entry is the same."""
    return pa.table({KEY: pa.array([text_key(t) for t in texts], KEY_TYPE),
                     "translation": pa.array([t.upper() for t in texts], pa.string()),
                     "score": pa.array([-len(t) / 7 for t in texts], pa.float64()),
                     "status": pa.array(["ok"] * len(texts), pa.string()),
                     "segments": pa.array([1] * len(texts), pa.int32()),
                     "source_tokens": pa.array([len(t) for t in texts], pa.int64()),
                     "target_tokens": pa.array([len(t) + 1 for t in texts], pa.int64())})


def batch_texts(writer: str, batch: int, rows: int) -> list[str]:
    """A batch of its own texts and texts every writer writes too (the same entries, concurrently)."""
    return [f"{writer}-{batch}-{i}" for i in range(rows)] + [f"shared-{batch}-{i}" for i in range(3)]


def memory(directory: str) -> TranslationMemory:
    return TranslationMemory(Store(directory), PARTITIONS, fanout=FANOUT)


def main(directory: str, writer: str, batches: int, rows: int) -> None:
    handle = memory(directory)
    for batch in range(batches):
        handle.write(entries(batch_texts(writer, batch, rows)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
