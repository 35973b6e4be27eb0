"""Translation memory: what a model made of a source text, kept in the object store for every later run.

A content-addressed store shared by all runs, workers and outputs: an entry maps the exact source
text of a row to the columns a part gets for it (``output_columns``) plus its token counts, under a
*namespace* that fixes everything else that shapes the translation (model files, numerics, search
settings, source language, output columns, code versions; what the caller passes as ``keyed_by``).

Layout under the memory URL::

    <namespace>/_namespace.json           what the namespace is keyed by (exclusive create)
    <namespace>/p07/l00-<uuid>.parquet    immutable shards: key + value columns, sorted by key

**Keys.** The first 16 bytes of the SHA-256 of the row's text, exactly as read (UTF-8): no
normalization. The translator keeps a multi-line row's own whitespace and line breaks between its
translated pieces, and cuts over-long lines with sentence rules that see the raw text, so even NFC
(U+2000 EN QUAD → U+2002 EN SPACE between two lines) or stripping would merge rows whose translations
differ. Null and blank rows (translated without the model) are not stored.

**Partitions and shards.** A key belongs to partition ``key[:4] mod P`` (P is recorded in
``_namespace.json``). Writers only ever add shards, each written atomically under a fresh uuid name,
so concurrent writers cannot corrupt anything; the same key written twice (two workers translating the
same sentence at once) is harmless: lookups take either copy, compaction keeps one.

**Compaction** (size-tiered, like an LSM tree): a shard written by a chunk is level 0; when a
partition holds ``fanout`` shards of one level, they are merged into one shard of the next level
(deduplicated, sorted), written first, then exactly the merged shards are deleted. This is safe under
any concurrency: an entry is deleted only from a shard whose every entry is already durable in a
merged shard; a compactor deletes only the names it listed and read, never a shard written after it
listed; two compactors of the same shards both write a merged copy (duplicates, harmless) or one of
them finds a shard gone while reading and gives up without writing or deleting anything; a reader
that finds a listed shard gone (deleted after its listing) lists again and finds the merged one.
Shards stop growing at ``max_shard_rows`` entries (merges never exceed it), so a compaction holds at
most that many entries in memory.

**Cost.** Per lookup of a chunk's keys: one fresh listing per touched partition (up to P), one footer
per shard not seen before by this process, and only the row groups (``ROW_GROUP_ROWS`` rows) whose key
statistics [min, max] can hold a looked-up key: their key column (16 bytes a row) and, for the row
groups holding hits, the value columns. Shards per partition stay around ``(fanout - 1) × levels`` +
``entries / (P × max_shard_rows)``, with levels ≈ log_fanout(max_shard_rows / chunk rows). A write
rewrites each entry about once per level over its life. Memory: the key arrays and footers read are
kept per process in an LRU cache bounded by a byte budget (shards are immutable and uniquely named,
so cached entries are never stale); beyond it, a lookup holds at most one row group per looked-up key
per shard, whatever the memory's size. The limit: full shards (``max_shard_rows``) are not merged
further and each spans its partition's whole key range, so past ``P × max_shard_rows`` entries (16M
by default) every full shard adds row-group reads to each lookup: create bigger memories with more
partitions. A shard whose bytes are damaged (a bad copy) is skipped by lookups and merges with a
warning; deleting it, the memory or a namespace directory is always safe: it only costs re-translation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import uuid
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from s2s_core.storage import Store

log = logging.getLogger(__name__)

FORMAT = 1
NAMESPACE_FILE = "_namespace.json"
KEY = "key"
KEY_TYPE = pa.binary(16)
DEFAULT_PARTITIONS = 16
DEFAULT_FANOUT = 8
MAX_SHARD_ROWS = 1 << 20  # a merge holds at most this many entries in memory
ROW_GROUP_ROWS = 4096  # the unit a lookup reads: 64 KiB of keys
DEFAULT_CACHE_BYTES = 128 << 20
_LIST_TRIES = 4  # listings of a partition per lookup when compactions keep removing listed shards
_READERS = 8  # concurrent partition lookups (object stores: overlapped requests)


class MemoryMismatchError(ValueError):
    """A namespace directory holds entries keyed by other settings than the ones asked for."""


def text_key(text: str) -> bytes:
    """The key of a source text: no normalization (see the module docstring for why)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def is_remembered(text: str | None) -> bool:
    """Whether a row's text goes through the memory (null and blank rows need no model)."""
    return bool(text) and not text.isspace()


def namespace_of(keyed_by: dict) -> str:
    """The directory name of the entries keyed by ``keyed_by`` (a JSON-able dict)."""
    return hashlib.sha256(json.dumps(keyed_by, sort_keys=True).encode()).hexdigest()[:16]


class ShardCache:
    """Per-process LRU of immutable shard data (footers, key arrays) under a byte budget."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES):
        self.budget = budget_bytes
        self.used = 0
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], tuple[Any, int]]) -> Any:
        """The cached value of ``key``, or ``load()``'s (value, size in bytes), kept if it fits."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value, size = load()  # outside the lock: loads of other shards go on meanwhile
        with self._lock:
            if key not in self._items and size <= self.budget:
                self._items[key] = (value, size)
                self.used += size
                while self.used > self.budget:
                    self.used -= self._items.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0


SHARED_CACHE = ShardCache()


def open_memory(store: Store, keyed_by: dict, partitions: int = DEFAULT_PARTITIONS,
                **settings: Any) -> TranslationMemory:
    """The namespace of ``keyed_by`` under ``store``, created on first use (exclusive create).

    Refuses (``MemoryMismatchError``) a namespace whose record names other settings: a hash
    collision, or a directory copied or edited by hand. Its partition count is the recorded one.
    """
    namespace = namespace_of(keyed_by)
    folder = store.sub(namespace)
    record = {"format": FORMAT, "namespace": namespace, "partitions": partitions, "keyed_by": keyed_by,
              "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if not folder.exists(NAMESPACE_FILE):
        with suppress(FileExistsError):  # another writer created it a moment ago: check theirs
            folder.create_bytes(NAMESPACE_FILE, json.dumps(record, indent=1, sort_keys=True).encode())
            return TranslationMemory(folder, partitions, **settings)
    pinned = folder.read_json(NAMESPACE_FILE)
    if pinned.get("format") != FORMAT or _canonical(pinned.get("keyed_by")) != _canonical(keyed_by):
        raise MemoryMismatchError(f"translation memory {folder.url} is keyed by other settings than "
                                  f"this job's ({pinned.get('keyed_by')} vs {keyed_by}); delete that "
                                  "directory (it only costs re-translation)")
    return TranslationMemory(folder, int(pinned["partitions"]), **settings)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class TranslationMemory:
    """One namespace of the memory: look up keys, add entries, compact partitions."""

    def __init__(self, store: Store, partitions: int = DEFAULT_PARTITIONS, fanout: int = DEFAULT_FANOUT,
                 max_shard_rows: int = MAX_SHARD_ROWS, cache: ShardCache | None = None):
        if partitions < 1 or fanout < 2:
            raise ValueError(f"need ≥ 1 partition and a fanout ≥ 2, got {partitions} and {fanout}")
        self.store, self.partitions, self.fanout = store, partitions, fanout
        self.max_shard_rows = max_shard_rows
        self.cache = cache or SHARED_CACHE

    def __repr__(self) -> str:
        return f"TranslationMemory({self.store.url!r})"

    def partition_of(self, key: bytes) -> int:
        return int.from_bytes(key[:4], "big") % self.partitions

    def partition_dir(self, partition: int) -> str:
        return f"p{partition:03d}"

    # ------------------------------------------------------------------ lookups
    def lookup(self, keys: Iterable[bytes]) -> pa.Table | None:
        """The entries of those ``keys`` that the memory holds (one row per key, any order), or None."""
        groups: dict[int, set[bytes]] = {}
        for key in keys:
            groups.setdefault(self.partition_of(key), set()).add(key)
        if not groups:
            return None
        with ThreadPoolExecutor(min(_READERS, len(groups))) as pool:
            found = [t for t in pool.map(self._lookup_partition, groups.items()) if t is not None]
        return pa.concat_tables(found) if found else None

    def _lookup_partition(self, item: tuple[int, set[bytes]]) -> pa.Table | None:
        partition, keys = item
        wanted = sorted(keys)
        folder = self.partition_dir(partition)
        for attempt in range(_LIST_TRIES):
            names = [n for n in self.store.list_names(folder) if _level(n) is not None]
            try:
                return self._search(folder, names, wanted)
            except FileNotFoundError:  # compacted away after the listing: its rows are in a newer shard
                if attempt == _LIST_TRIES - 1:
                    raise
        return None

    def _search(self, folder: str, names: list[str], wanted: list[bytes]) -> pa.Table | None:
        """Look for ``wanted`` (sorted) in the shards ``names``; first copy of each key wins."""
        remaining, found = set(wanted), []
        for name in sorted(names, key=lambda n: -(_level(n) or 0)):  # big merged shards hold the most
            if not remaining:
                break
            try:
                rows = self._search_shard(f"{folder}/{name}", remaining)
            except FileNotFoundError:
                raise
            except (pa.ArrowInvalid, OSError) as err:
                if not _is_damage(err):
                    raise  # a transient read error: the caller's retries handle it
                log.warning("translation memory shard %s is unreadable (%s): skipped (its entries are "
                            "translated again); delete it", self.store.describe(self.store.path(
                                f"{folder}/{name}")), err)
                continue
            for table in rows:
                remaining -= set(table.column(KEY).to_pylist())
                found.append(table)
        if not found:
            return None
        return pa.concat_tables(found, promote_options="permissive")

    def _search_shard(self, path: str, remaining: set[bytes]) -> list[pa.Table]:
        """The entries of ``remaining`` keys in one shard (one table per row group holding some)."""
        metadata = self._footer(path)
        groups = _candidate_row_groups(metadata, sorted(remaining))
        if not groups:
            return []
        wanted = pa.array(sorted(remaining), KEY_TYPE)
        found = []
        with self.store.open(path) as f:
            shard = pq.ParquetFile(f, metadata=metadata)
            for group in groups:
                positions = pc.indices_nonzero(pc.is_in(self._keys(path, shard, group), value_set=wanted))
                if len(positions):
                    found.append(_first_per_key(shard.read_row_group(group).take(positions)))
        return found

    def _footer(self, path: str) -> pq.FileMetaData:
        def load() -> tuple[pq.FileMetaData, int]:
            with self.store.open(path) as f:
                metadata = pq.ParquetFile(f).metadata
            return metadata, metadata.serialized_size + 1024

        return self.cache.get((self.store.path(path), "footer"), load)

    def _keys(self, path: str, shard: pq.ParquetFile, group: int) -> pa.Array:
        def load() -> tuple[pa.Array, int]:
            keys = shard.read_row_group(group, columns=[KEY]).column(0).combine_chunks()
            return keys, keys.nbytes + 128

        return self.cache.get((self.store.path(path), group), load)

    # ------------------------------------------------------------------ writes
    def write(self, entries: pa.Table) -> int:
        """Add ``entries`` (a ``key`` column + value columns); returns how many distinct keys were written.

        One level-0 shard per touched partition, then each touched partition is compacted if due.
        """
        entries = _first_per_key(entries)
        if not entries.num_rows:
            return 0
        partitions = pa.array([self.partition_of(k) for k in entries.column(KEY).to_pylist()], pa.int32())
        touched = sorted(set(partitions.to_pylist()))
        for partition in touched:
            rows = entries.filter(pc.equal(partitions, partition))
            self._write_shard(self.partition_dir(partition), rows, level=0)
        for partition in touched:
            try:
                self.compact(partition)
            except (OSError, pa.ArrowInvalid) as err:  # maintenance only: the entries are written
                log.warning("translation memory %s: compacting partition %d failed: %s", self.store.url,
                            partition, err)
        return entries.num_rows

    def _write_shard(self, folder: str, rows: pa.Table, level: int) -> str:
        buffer = io.BytesIO()
        pq.write_table(rows.sort_by(KEY), buffer, row_group_size=ROW_GROUP_ROWS,
                       compression="zstd")
        name = f"{folder}/l{level:02d}-{uuid.uuid4().hex}.parquet"
        self.store.write_bytes(name, buffer.getvalue())
        return name

    def compact(self, partition: int) -> int:
        """Merge the partition's full levels into the next ones (see the module docstring); returns
        how many shards were merged away."""
        folder, merged, stuck = self.partition_dir(partition), 0, set()
        for _ in range(64):  # each round merges one level: a cascade is a few rounds
            levels: dict[int, list[str]] = {}
            for name in self.shard_names(partition):
                levels.setdefault(_level(name) or 0, []).append(name)
            full = [level for level, names in levels.items()
                    if len(names) >= self.fanout and level not in stuck]
            if not full:
                break
            level = min(full)
            batch = self._within_budget(folder, sorted(levels[level]))
            if len(batch) < 2 or level >= 99 or not self._merge(folder, batch, level + 1):
                stuck.add(level)  # shards at their size cap, or another compactor is merging them
                continue
            merged += len(batch)
        return merged

    def _within_budget(self, folder: str, names: list[str]) -> list[str]:
        """The longest prefix of ``names`` whose rows fit in one shard of ``max_shard_rows``."""
        batch, rows = [], 0
        for name in names:
            try:
                count = self._footer(f"{folder}/{name}").num_rows
            except FileNotFoundError:  # merged away by another compactor: skip it
                continue
            except (pa.ArrowInvalid, OSError) as err:
                if not _is_damage(err):
                    raise
                continue  # unreadable: never merged (lookups skip it with a warning)
            if rows + count > self.max_shard_rows:
                break
            batch.append(name)
            rows += count
        return batch

    def _merge(self, folder: str, names: list[str], level: int) -> bool:
        """Write the union of shards ``names`` as one shard of ``level``, then delete exactly them.

        False (nothing written or deleted) if one of them is gone: another compactor merged it.
        """
        tables, merged = [], []
        for name in names:
            try:
                tables.append(self._read_shard(f"{folder}/{name}"))
            except FileNotFoundError:
                return False
            except (pa.ArrowInvalid, OSError) as err:
                if not _is_damage(err):
                    raise
                log.warning("translation memory shard %s/%s is unreadable (%s): left out of the merge; "
                            "delete it", self.store.url, f"{folder}/{name}", err)
                continue
            merged.append(name)
        if len(tables) < 2:
            return False
        names = merged
        union = _first_per_key(pa.concat_tables(tables, promote_options="permissive"))
        self._write_shard(folder, union, level)  # durable before anything it holds is deleted
        for name in names:
            with suppress(FileNotFoundError):
                self.store.fs.rm(self.store.path(f"{folder}/{name}"))
        return True

    def _read_shard(self, path: str) -> pa.Table:
        with self.store.open(path) as f:
            return pq.read_table(f)

    def shard_names(self, partition: int) -> list[str]:
        """The partition's shards, from a fresh listing."""
        return [n for n in self.store.list_names(self.partition_dir(partition)) if _level(n) is not None]


def _is_damage(err: Exception) -> bool:
    """Whether a read error means the shard's bytes are not Parquet (pyarrow reports corrupt pages
    as ``OSError``), not that the store failed for a moment."""
    return isinstance(err, pa.ArrowInvalid) or any(
        s in str(err) for s in ("deserialize", "Parquet", "parquet", "page header", "magic bytes"))


def _level(name: str) -> int | None:
    """The level of a shard name (``l03-<uuid>.parquet`` → 3); None for anything else."""
    if len(name) < 4 or name[0] != "l" or name[3] != "-" or not name.endswith(".parquet"):
        return None
    return int(name[1:3]) if name[1:3].isdigit() else None


def _candidate_row_groups(metadata: pq.FileMetaData, wanted: Sequence[bytes]) -> list[int]:
    """Row groups whose key statistics [min, max] hold at least one of ``wanted`` (sorted)."""
    column = metadata.schema.names.index(KEY)
    groups = []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max:  # no statistics: the row group must be read
            groups.append(i)
            continue
        j = bisect_left(wanted, stats.min)
        if j < len(wanted) and wanted[j] <= stats.max:
            groups.append(i)
    return groups


def _first_per_key(table: pa.Table) -> pa.Table:
    """``table`` with only the first row of each key (copies of one entry hold the same values)."""
    keys = table.column(KEY).combine_chunks()
    if pc.count_distinct(keys).as_py() == len(keys):
        return table
    seen: dict[bytes, int] = {}
    for i, key in enumerate(keys.to_pylist()):
        seen.setdefault(key, i)
    return table.take(pa.array(sorted(seen.values()), pa.int64()))
