"""Chunk outputs and their commit protocol.

A chunk's rows go to ``part-<chunk>.parquet`` (written atomically), then the chunk is committed by
creating ``_done/<chunk>.json`` exclusively (``storage.create_bytes``). Only committed chunks
count: a part without a marker is the leftover of an interrupted attempt and is simply rewritten.
The exclusive create makes the commit happen at most once even when two attempts race (the loser
gets ``FileExistsError``). A losing attempt may have rewritten the part just before losing; it
wrote the same rows, because the plan pins the model and search settings (scores may differ in
the last float32 digits if the two attempts ran with different thread counts or hardware).
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core import storage

DONE_DIR = "_done"
PLAN, MANIFEST = "_plan.json", "manifest.json"


def part_name(chunk_id: str) -> str:
    return f"part-{chunk_id}.parquet"


def part_url(output: str, chunk_id: str) -> str:
    return storage.join(output, part_name(chunk_id))


def marker_url(output: str, chunk_id: str) -> str:
    return storage.join(output, DONE_DIR, f"{chunk_id}.json")


def write_part(output: str, chunk_id: str, table: pa.Table, storage_options: dict[str, Any]) -> int:
    """Write the chunk's table atomically; returns its size in bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=max(1, table.num_rows))
    data = buffer.getvalue()
    storage.write_bytes(part_url(output, chunk_id), data, **storage_options)
    return len(data)


def commit(output: str, chunk_id: str, record: dict, storage_options: dict[str, Any]) -> bool:
    """Commit a chunk with its marker ``record``; False if another attempt committed it first."""
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    try:
        storage.create_bytes(marker_url(output, chunk_id), data, **storage_options)
    except FileExistsError:
        return False
    return True


def is_committed(output: str, chunk_id: str, storage_options: dict[str, Any]) -> bool:
    fs, path = storage.filesystem(marker_url(output, chunk_id), **storage_options)
    fs.invalidate_cache(posixpath.dirname(path))
    return fs.exists(path)


def committed_ids(output: str, storage_options: dict[str, Any]) -> set[str]:
    """Ids of the committed chunks, from a fresh listing (s3fs would otherwise answer from cache)."""
    names = storage.list_names(storage.join(output, DONE_DIR), **storage_options)
    return {n[: -len(".json")] for n in names if n.endswith(".json")}


def read_markers(output: str, chunk_ids: list[str], storage_options: dict[str, Any],
                 batch: int = 512) -> dict[str, dict]:
    """Marker records of ``chunk_ids``, fetched a batch at a time (concurrently on object stores)."""
    fs, root = storage.filesystem(output, **storage_options)
    records = {}
    for i in range(0, len(chunk_ids), batch):
        ids = chunk_ids[i:i + batch]
        paths = [posixpath.join(root, DONE_DIR, f"{c}.json") for c in ids]
        contents = fs.cat(paths)
        for chunk, path in zip(ids, paths, strict=True):
            records[chunk] = json.loads(contents[path])
    return records


def part_rows(output: str, chunk_id: str, storage_options: dict[str, Any]) -> int:
    """Row count of a part from its footer (no data read)."""
    fs, path = storage.filesystem(part_url(output, chunk_id), **storage_options)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_part_column(output: str, chunk_id: str, column: str, storage_options: dict[str, Any]) -> pa.Array:
    """One column of a part (e.g. the ids), nothing else."""
    fs, path = storage.filesystem(part_url(output, chunk_id), **storage_options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=[column]).column(0).combine_chunks()
