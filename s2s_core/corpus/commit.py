"""The output's part files and their commit protocol.

A chunk's rows go to ``part-<chunk>.parquet`` (written atomically), then the chunk is committed by
creating ``_done/<chunk>.json`` exclusively (``Store.create_bytes``). Only committed chunks count:
a part without a marker is the leftover of an interrupted attempt and is simply rewritten. The
exclusive create makes the commit happen at most once even when two attempts race (the loser gets
``FileExistsError``). A losing attempt may have rewritten the part just before losing; it wrote the
same rows, because the plan pins the model and search settings (scores may differ in the last
float32 digits if the two attempts ran with different thread counts or hardware).

Local parts and markers are fsynced, and so is their directory, before the next step (``Store``), so
a power loss cannot leave a marker over a missing or torn part. A part damaged later anyway (a
truncated copy, a lost object) is found by verification, which ``withdraw``s its marker: the chunk
counts as not committed again and is translated anew.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core.storage import Store

DONE_DIR = "_done"
# What a part adds to its input columns (nbest only with n-best decoding); input columns may not
# have these names.
OUTPUT_COLUMNS = ("translation", "score", "status", "segments", "flags", "nbest")


def part_name(chunk_id: str) -> str:
    return f"part-{chunk_id}.parquet"


def marker_name(chunk_id: str) -> str:
    return f"{DONE_DIR}/{chunk_id}.json"


def write_part(output: Store, chunk_id: str, table: pa.Table) -> int:
    """Write the chunk's table atomically; returns its size in bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=max(1, table.num_rows))
    data = buffer.getvalue()
    output.write_bytes(part_name(chunk_id), data)
    return len(data)


def commit(output: Store, chunk_id: str, record: dict) -> bool:
    """Commit a chunk with its marker ``record``; False if another attempt committed it first."""
    try:
        output.create_bytes(marker_name(chunk_id), json.dumps(record, indent=1, sort_keys=True).encode())
    except FileExistsError:
        return False
    return True


def is_committed(output: Store, chunk_id: str) -> bool:
    return output.exists(marker_name(chunk_id))


def committed_ids(output: Store) -> set[str]:
    """Ids of the committed chunks, from a fresh listing."""
    return {n[: -len(".json")] for n in output.list_names(DONE_DIR) if n.endswith(".json")}


def read_markers(output: Store, chunk_ids: list[str]) -> dict[str, dict]:
    """Marker records of ``chunk_ids`` (fetched concurrently on object stores)."""
    contents = output.read_many([marker_name(c) for c in chunk_ids])
    return {c: json.loads(contents[marker_name(c)]) for c in chunk_ids}


def recommit(output: Store, chunk_id: str, record: dict) -> None:
    """Replace a committed chunk's marker (after its part was replaced with retried rows)."""
    output.write_bytes(marker_name(chunk_id), json.dumps(record, indent=1, sort_keys=True).encode())


def read_part(output: Store, chunk_id: str) -> pa.Table:
    with output.open(part_name(chunk_id)) as f:
        return pq.read_table(f)


def withdraw(output: Store, chunk_id: str) -> None:
    """Un-commit a chunk (its part is damaged): the next attempt translates and commits it again."""
    output.remove(marker_name(chunk_id))


def part_rows(output: Store, chunk_id: str) -> int:
    """Row count of a part from its footer (no data read)."""
    with output.open(part_name(chunk_id)) as f:
        return pq.ParquetFile(f).metadata.num_rows


def part_statuses(output: Store, chunk_id: str) -> tuple[int, dict[str, int]]:
    """Row count and status counts of a part, read from the part itself (its footer and one column).

    Raises ``FileNotFoundError`` for a missing part and ``pyarrow.ArrowInvalid`` for an unreadable one.
    """
    with output.open(part_name(chunk_id)) as f:
        parquet = pq.ParquetFile(f)
        rows = parquet.metadata.num_rows
        counts = parquet.read(columns=["status"], use_threads=False).column(0).value_counts()
    return rows, {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}


def read_part_column(output: Store, chunk_id: str, column: str) -> pa.Array:
    """One column of a part (e.g. the ids), nothing else."""
    with output.open(part_name(chunk_id)) as f:
        return pq.read_table(f, columns=[column]).column(0).combine_chunks()
