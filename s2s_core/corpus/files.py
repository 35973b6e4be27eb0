"""Corpora on any fsspec URL: find the files, fingerprint them, cut them into chunks, read a chunk.

A corpus is one file, a directory (or prefix) of files, or a glob, named by the input ``Store``'s
URL: Parquet files, read in place, and CSV, TSV and JSON Lines files, staged as Parquet first
(``formats``). Files are taken in sorted path order (the corpus row order) and each is cut into
chunks of about ``chunk_rows`` rows along its row groups, so a chunk reads only the row groups it
covers.

Files may differ in their columns (an upstream adds one, drops one, reorders them): each keeps its
own schema, and only the columns the job needs must be in every file with a compatible type (any
string encoding is a string: ``columns``). A part keeps its own file's columns.

Chunk ids are content-addressed: ``<key>-<start>-<stop>`` where ``key`` is a short hash of the file's
path relative to the input and its fingerprint (size + a checksum, see ``fingerprint``). An
untouched file keeps its chunk ids from run to run (its committed chunks are reused), a rewritten or
renamed file gets new ones (translated again), and a run from scratch over the same input names
exactly the same chunks. Ids therefore do not sort in corpus order: the plan's chunk list does.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import has_magic

from s2s_core.corpus import columns
from s2s_core.corpus.formats import (
    FORMATS,
    TEXT_FORMATS,
    Staged,
    format_of,
    iter_text_batches,
    open_data,
    staged_source,
    unknown_format_hint,
)
from s2s_core.corpus.heap import release_freed_memory
from s2s_core.errors import InputDataError
from s2s_core.storage import Store

# Side files that data tools leave beside their data (Spark, Hadoop, Hive, Delta): never data.
SIDE_SUFFIXES = (".crc", ".tmp", ".inprogress")
READ_BATCH_ROWS = 8192  # rows decoded at a time while slicing a chunk out of its row groups
HASH_BLOCK = 4 << 20  # bytes read at a time while hashing a file's content
# Checksums a store reports in ``info()``, best first: content digests (gcsfs ``md5Hash``, adlfs
# ``content_settings.content_md5``), then entity tags (s3fs ``ETag``: the MD5 of a single-part upload,
# a new value for every new upload; gcsfs/adlfs ``etag``), then gcsfs's 32-bit ``crc32c``.
CHECKSUM_KEYS = ("md5Hash", "content_md5", "ContentMD5", "ETag", "etag", "crc32c")
# A recorded content hash is reused only for a file whose size and mtime are unchanged AND whose mtime
# is this much older than the moment it was hashed: a file rewritten within the same mtime tick as its
# hashing (coarse-mtime filesystems) would otherwise keep a stale hash (git's "racy clean" problem).
RACY_SECONDS = 2.0
KEY_HEX = 16  # hex digits of a file key: 64 bits


@dataclass(frozen=True)
class InputFile:
    """One file of the corpus: where it is, what it holds (fingerprint, schema) and its row groups
    (a CSV/TSV/JSON Lines file's are those of its staged Parquet copy, ``staged``)."""

    path: str  # inside the filesystem
    name: str  # relative to the input (what the chunk ids hash, with the fingerprint)
    fingerprint: str  # "<size>:<checksum kind>:<value>"
    row_groups: tuple[int, ...]
    size: int
    mtime: float | None = None  # local-style filesystems: for the quick check of the next run
    hashed_at: float | None = None  # when its content hash was computed (None: a store checksum)
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]), compare=False)  # its own columns
    format: str = "parquet"
    staged: Staged | None = None  # CSV/TSV/JSON Lines: how it is read and where its Parquet copy is

    @property
    def rows(self) -> int:
        return sum(self.row_groups)

    @property
    def key(self) -> str:
        """Short hash of (relative path, fingerprint): the chunk-id prefix of this file's chunks."""
        return file_key(self.name, self.fingerprint)

    def record(self) -> dict:
        """What the manifest records of the file (and the next run reads back: ``from_record``)."""
        record = {"path": self.name, "key": self.key, "fingerprint": self.fingerprint, "rows": self.rows,
                  "size": self.size, "row_groups": list(self.row_groups), "mtime": self.mtime,
                  "hashed_at": self.hashed_at}
        if self.format != "parquet":
            record["format"] = self.format
        return record


@dataclass(frozen=True, slots=True)  # a 100M-row job plans 50,000 of them
class Chunk:
    """Rows ``[start, stop)`` of input file number ``file_index`` (file-local row numbers)."""

    id: str
    file_index: int
    path: str
    start: int
    stop: int
    staged: Staged | None = None  # the file's staged Parquet copy, for CSV/TSV/JSON Lines

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Corpus:
    """The input files of a corpus, each with its own schema."""

    url: str
    files: tuple[InputFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def schemas(self) -> tuple[list[pa.Schema], list[int]]:
        """The distinct schemas of the files, and each file's index into them (for the manifest)."""
        distinct: dict[bytes, int] = {}
        order: list[pa.Schema] = []
        indices = []
        for file in self.files:
            key = file.schema.serialize().to_pybytes()
            if key not in distinct:
                distinct[key] = len(order)
                order.append(file.schema)
            indices.append(distinct[key])
        return order, indices


def file_key(name: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{name}\0{fingerprint}".encode()).hexdigest()[:KEY_HEX]


def _is_side_file(path: str) -> bool:
    # Hidden and underscore names are Spark/Hive side files (_SUCCESS, _metadata, .tmp-...), and so
    # are checksums and in-progress writes.
    name = posixpath.basename(path)
    return name.startswith(("_", ".")) or name.lower().endswith(SIDE_SUFFIXES)


def list_input_files(input: Store, chosen: str = "auto") -> tuple[str, dict[str, dict]]:
    """The input's root folder and ``{path: info}`` of its corpus files, sorted; never empty.

    In a directory, files whose names say a corpus format (``formats.SUFFIXES``) are data, under
    ``auto``; with a ``chosen`` format every file but side files is. One listing gives every file's
    size and checksum (s3fs, gcsfs and adlfs listings carry them): no request per file.
    """
    if chosen not in ("auto", *FORMATS):
        raise ValueError(f"unknown corpus format {chosen!r}: choose one of auto, {', '.join(FORMATS)}")
    fs, path = input.fs, input.path()
    input.refresh()  # s3fs caches listings: another process may have just written the input
    if has_magic(path):
        root = path[: min(path.find(c) for c in "*?[" if c in path)].rpartition("/")[0]
        infos = {p: i for p, i in fs.glob(path, detail=True).items() if i.get("type") == "file"}
    elif fs.isdir(path):
        root = path
        found = {p: i for p, i in fs.find(path, detail=True).items() if not _is_side_file(p)}
        infos = {p: i for p, i in found.items() if chosen != "auto" or format_of(p) is not None}
        if not infos and found:
            example = next(iter(sorted(found)))
            raise InputDataError(f"no corpus files in input {input.url}: it holds {len(found)} file(s) "
                                 f"whose names do not say their format, e.g. {input.describe(example)}: "
                                 f"{unknown_format_hint(example)}")
    elif fs.isfile(path):
        root, infos = posixpath.dirname(path), {path: fs.info(path)}
    else:
        raise FileNotFoundError(f"input not found: {input.url}")
    if not infos:
        raise FileNotFoundError(f"no corpus files (Parquet, CSV, TSV, JSON Lines) in input {input.url}")
    if chosen == "auto":
        unknown = next((p for p in sorted(infos) if format_of(p) is None), None)
        if unknown is not None:
            raise InputDataError(f"cannot tell the format of {input.describe(unknown)} from its name: "
                                 f"{unknown_format_hint(unknown)}")
    return root, dict(sorted(infos.items()))


def relative_name(root: str, path: str) -> str:
    return path[len(root):].lstrip("/") if root and path.startswith(root.rstrip("/") + "/") else path


def store_checksum(info: dict[str, Any]) -> tuple[str, str] | None:
    """The best checksum the store reports for an object (``CHECKSUM_KEYS``), or None."""
    nested = info.get("content_settings")
    for key in CHECKSUM_KEYS:
        value = info.get(key)
        if not value and isinstance(nested, dict):
            value = nested.get(key)
        if value:
            text = bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value).strip('"')
            return key.lower(), text
    return None


def content_hash(input: Store, path: str) -> str:
    """SHA-256 of a file's bytes, streamed (bounded memory)."""
    digest = hashlib.sha256()
    with input.fs.open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(input: Store, path: str, name: str, info: dict[str, Any], previous: dict[str, dict]
                ) -> tuple[str, float | None]:
    """The file's fingerprint and, for a content hash, when it was computed.

    Size + the store's checksum when it reports one (no data read); otherwise a SHA-256 of the
    content, reused from the previous run's record (``previous``, by relative path) when size and
    mtime are unchanged and the mtime predates that hashing (the rsync/git quick check).
    """
    size = int(info["size"])
    checksum = store_checksum(info)
    if checksum:
        return f"{size}:{checksum[0]}:{checksum[1]}", None
    mtime, before = info.get("mtime"), previous.get(name)
    if (before and mtime is not None and before.get("hashed_at") is not None and before["size"] == size
            and before.get("mtime") == mtime and mtime < before["hashed_at"] - RACY_SECONDS):
        return before["fingerprint"], before["hashed_at"]
    hashed_at = time.time()  # before reading: a write during hashing leaves a newer mtime
    return f"{size}:sha256:{content_hash(input, path)}", hashed_at


def _footer(input: Store, path: str, staged: Staged | None) -> pq.FileMetaData:
    try:
        with open_data(input, path, staged) as f:
            return pq.ParquetFile(f).metadata
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise InputDataError(f"{input.describe(path)} is not a readable Parquet file: {err}") from err


def open_corpus(input: Store, previous: Iterable[dict] = (), previous_schemas: Sequence[pa.Schema] = (),
                staging: Store | None = None, chosen_format: str = "auto", text_encoding: str | None = None
                ) -> Corpus:
    """List and fingerprint the input files and read their row groups and schemas.

    ``previous`` are the file records of the last verified run (``InputFile.record``, each with the
    index of its schema in ``previous_schemas``): a file whose relative path and fingerprint match
    a record is not opened at all (its row groups and schema are on record). A CSV/TSV/JSON Lines
    file that is not is staged as Parquet into ``staging`` (its rows must be counted); without a
    ``staging`` store (a quick check of the columns before a run) only its first block is read, and
    its row groups are left empty.
    """
    root, infos = list_input_files(input, chosen_format)
    by_name = {p["path"]: p for p in previous} if previous_schemas else {}
    files, footers = [], 0
    for path, info in infos.items():
        name = relative_name(root, path)
        fp, hashed_at = fingerprint(input, path, name, info, by_name)
        fmt, compression = format_of(path, chosen_format) or ("parquet", None)
        staged = None
        if fmt in TEXT_FORMATS:
            encoding = text_encoding if fmt != "jsonl" else None  # JSON is UTF-8 by definition
            staged = staged_source(file_key(name, fp), fmt, compression, encoding,
                                   staging or Store(input.url))  # no staging: its name is not used
        known = by_name.get(name)
        if known is not None and known["fingerprint"] == fp and known.get("format", "parquet") == fmt:
            row_groups = tuple(known["row_groups"])
            schema = previous_schemas[known.get("schema", 0)]
        elif staged is not None and staging is None:
            schema, row_groups = _peek_schema(input, path, staged), ()
        else:  # a CSV/TSV/JSON Lines file is staged here, by the first read of its Parquet copy
            meta = _footer(input, path, staged)
            schema = meta.schema.to_arrow_schema().remove_metadata()
            row_groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            footers += 1
        files.append(InputFile(path, name, fp, row_groups, int(info["size"]), info.get("mtime"), hashed_at,
                               schema, fmt, staged))
    if footers:
        release_freed_memory()  # the footers' many small allocations, freed but kept resident
    return Corpus(input.url, tuple(files))


def _peek_schema(input: Store, path: str, staged: Staged) -> pa.Schema:
    """The columns of a CSV/TSV/JSON Lines file from its first block (nothing staged)."""
    batches = iter_text_batches(input.fs, path, staged.format, staged.compression, staged.encoding,
                                input.describe(path))
    try:
        first = next(batches, None)
    finally:
        batches.close()
    return first.schema if first is not None else pa.schema([])


def schema_to_text(schema: pa.Schema) -> str:
    """A schema as text for a JSON record (Arrow IPC, base64), read back by ``schema_from_text``."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def check_columns(corpus: Corpus, text_column: str, id_column: str | None,
                  reserved: Sequence[str] = (), text_encoding: str | None = None) -> None:
    """Raise ``InputDataError`` naming the file and the problem if the corpus cannot be translated
    as asked: every file must have the text and id columns, the text in any string encoding (bytes
    only with a ``text_encoding``), the ids of one kind in all files; other columns may differ."""
    id_kind: tuple[str, str] | None = None  # (kind, the file it was first seen in)
    seen: set[bytes] = set()
    for file in corpus.files:
        if not file.schema.names and file.format == "jsonl" and not file.rows:
            continue  # an empty JSON Lines file has no columns to check (and no rows to translate)
        where = f"input file {file.name}"
        names = file.schema.names
        for role, column in (("text", text_column), ("id", id_column)):
            if column is not None and column not in names:
                hint = "; name another with --id-column, or --id-column '' for none" if role == "id" else ""
                raise InputDataError(f"{where} has no {role} column {column!r} "
                                     f"(columns: {', '.join(names) or 'none'}){hint}")
        if id_column is not None:
            this = columns.kind(file.schema.field(id_column).type)
            if this != columns.NULL:
                if id_kind is None:
                    id_kind = (this, where)
                elif this != id_kind[0]:
                    raise InputDataError(
                        f"id column {id_column!r} of {where} holds {_kind_name(this)}, {id_kind[1]} "
                        f"{_kind_name(id_kind[0])}: a type change of the id column (ids must compare across "
                        "files); convert it, or translate the files to separate outputs")
        key = file.schema.serialize().to_pybytes()
        if key in seen:
            continue
        seen.add(key)
        text_type = file.schema.field(text_column).type
        text_kind = columns.kind(text_type)
        if text_kind == columns.BINARY and text_encoding is None:
            raise InputDataError(f"text column {text_column!r} of {where} holds bytes ({text_type}); give "
                                 "--text-encoding utf-8 (or the encoding it is in) to read it as text")
        if text_kind not in (columns.STRING, columns.BINARY, columns.NULL):
            raise InputDataError(f"text column {text_column!r} of {where} holds {text_type}, not strings")
        clashes = [c for c in reserved if c in names]
        if clashes:
            raise InputDataError(f"{where} already has column(s) {clashes}, which the output adds; "
                                 "rename them first")


def _kind_name(kind: str) -> str:
    return {columns.STRING: "strings", columns.INTEGER: "integers", columns.BINARY: "bytes"}.get(kind, kind)


def chunk_id(key: str, start: int, stop: int) -> str:
    """Content-addressed id: the file's key (path + fingerprint) and the file-local row range."""
    return f"{key}-{start:010d}-{stop:010d}"


def is_chunk_id(text: str) -> bool:
    """Whether ``text`` has the shape of a chunk id (what may be cleaned up as a stale part or marker)."""
    key, _, rows = text.partition("-")
    start, _, stop = rows.partition("-")
    return (len(key) == KEY_HEX and all(c in "0123456789abcdef" for c in key)
            and len(start) == len(stop) == 10 and start.isdigit() and stop.isdigit())


def cut_chunks(corpus: Corpus, chunk_rows: int) -> list[Chunk]:
    """Chunks of at most ``chunk_rows`` rows, in corpus order, covering every row exactly once.

    Small row groups are packed together; a row group larger than ``chunk_rows`` is cut into
    near-equal row ranges (each chunk then decodes its row group only up to its last row).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
    chunks: list[Chunk] = []
    for index, file in enumerate(corpus.files):
        ranges: list[tuple[int, int]] = []
        start = pos = 0
        for n in file.row_groups:
            if pos > start and pos + n - start > chunk_rows:
                ranges.append((start, pos))
                start = pos
            if n > chunk_rows:
                pieces = -(-n // chunk_rows)
                bounds = [pos + n * k // pieces for k in range(pieces + 1)]
                ranges.extend(zip(bounds[:-1], bounds[1:], strict=True))
                start = pos + n
            pos += n
        if pos > start:
            ranges.append((start, pos))
        chunks.extend(Chunk(chunk_id(file.key, a, b), index, file.path, a, b, file.staged)
                      for a, b in ranges if b > a)
    return chunks


def iter_chunk_batches(input: Store, chunk: Chunk, columns: Sequence[str] | None = None,
                       batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches holding exactly the chunk's rows, reading only the row groups it covers."""
    with open_data(input, chunk.path, chunk.staged) as f:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        groups, offset, first_row = [], 0, None
        for i, n in enumerate(sizes):
            if offset < chunk.stop and offset + n > chunk.start:
                groups.append(i)
                first_row = offset if first_row is None else first_row
            offset += n
        if chunk.stop > offset:
            raise ValueError(f"{input.describe(chunk.path)} has {offset} rows, chunk {chunk.id} needs "
                             f"{chunk.stop}: the input changed since it was planned")
        pos = first_row or 0
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups,
                                          columns=list(columns) if columns is not None else None,
                                          use_threads=False):
            lo, hi = max(chunk.start, pos) - pos, min(chunk.stop, pos + batch.num_rows) - pos
            if hi > lo:
                yield batch.slice(lo, hi - lo)
            pos += batch.num_rows
            if pos >= chunk.stop:  # stop decoding: later rows belong to other chunks
                return


def read_chunk(input: Store, chunk: Chunk, columns: Sequence[str] | None = None) -> pa.Table:
    """The chunk's rows (all columns, or ``columns``) as one table."""
    batches = list(iter_chunk_batches(input, chunk, columns))
    table = pa.Table.from_batches(batches) if batches else pa.table({})
    if table.num_rows != chunk.rows:
        raise ValueError(f"chunk {chunk.id} of {input.describe(chunk.path)}: read {table.num_rows} rows, "
                         f"planned {chunk.rows}: the input changed since it was planned")
    return table


def iter_column(input: Store, files: Iterable[InputFile], column: str, batch_rows: int = 65536
                ) -> Iterator[pa.Array]:
    """One column of ``files`` in their order, a batch at a time (bounded memory)."""
    for file in files:
        with open_data(input, file.path, file.staged) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=[column],
                                                         use_threads=False):
                yield batch.column(0)
