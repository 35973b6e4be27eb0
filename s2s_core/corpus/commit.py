"""The output's part files and their commit protocol.

A chunk's rows go to ``part-<chunk>.parquet`` (written atomically), then the chunk is committed by
creating ``_done/<chunk>.json`` exclusively (``Store.create_bytes``). Only committed chunks count:
a part without a marker is the leftover of an interrupted attempt and is simply rewritten. The
exclusive create makes the commit happen at most once even when two attempts race (the loser gets
``FileExistsError``). A losing attempt may have rewritten the part just before losing; it wrote the
same rows, because the plan pins the model and search settings (scores may differ in the last
float32 digits if the two attempts ran with different thread counts or hardware).
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core.storage import Store

DONE_DIR = "_done"
OUTPUT_COLUMNS = ("translation", "score", "status")  # what a part adds to its input columns


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


def part_rows(output: Store, chunk_id: str) -> int:
    """Row count of a part from its footer (no data read)."""
    with output.open(part_name(chunk_id)) as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_part_column(output: Store, chunk_id: str, column: str) -> pa.Array:
    """One column of a part (e.g. the ids), nothing else."""
    with output.open(part_name(chunk_id)) as f:
        return pq.read_table(f, columns=[column]).column(0).combine_chunks()
