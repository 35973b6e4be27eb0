"""Corpus file formats: Parquet, and CSV, TSV and JSON Lines staged as Parquet.

A corpus file's format comes from its name (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``,
each of the text formats optionally ``.gz``, ``.bz2``, ``.zst`` or ``.xz`` compressed) or from an
explicit choice (``--format``). Parquet files are read in place, a row group at a time. A CSV, TSV or
JSON Lines file has no row groups to cut chunks along and no row count in a footer, so the first run
that needs its rows *stages* it: one streaming pass (bounded memory: a block of text and a row group
of rows at a time) writes a Parquet copy under the output's ``_staged/`` folder, named by the file's
content-addressed key and the reading settings, and published atomically. From then on the file is
chunked, read, committed and verified exactly like a Parquet file. Staged copies are deleted once a
run is verified; a later run that must read a file again (a damaged part) stages it again, and gets
the same rows: staging is deterministic.

CSV and TSV columns are read as strings, exactly as written (no type inference: ``007`` stays
``007``, an empty field is the empty string), quoted fields may hold delimiters, quotes and line
breaks (what pandas, polars, pyarrow and Spark write), and a leading UTF-8 byte-order mark is
dropped. JSON Lines keep JSON's own types (numbers, strings, nested objects).
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import posixpath
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import IO

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from s2s_core.errors import InputDataError
from s2s_core.storage import Store

FORMATS = ("parquet", "csv", "tsv", "jsonl")
TEXT_FORMATS = ("csv", "tsv", "jsonl")  # formats that are staged as Parquet before chunking
SUFFIXES = {".parquet": "parquet", ".parq": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv",
            ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonlines": "jsonl"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".xz": "xz"}
# Names that hold data but do not say in which corpus format: refused under ``auto`` with this hint.
AMBIGUOUS = {".json": "if it is JSON Lines (one object per line), choose --format jsonl"}
STAGING_DIR = "_staged"
STAGED_ROW_GROUP_ROWS = 4096  # rows per row group of a staged copy: chunks are cut along these
STAGING_FORMAT = 1  # bump when staging would give other rows or types: old copies are not reused
BLOCK_BYTES = 4 << 20  # bytes of text parsed at a time while staging
logger = logging.getLogger(__name__)
_STAGING_LOCKS: dict[str, threading.Lock] = {}
_STAGING_LOCK = threading.Lock()


@dataclass(frozen=True)
class Staged:
    """How a CSV/TSV/JSON Lines file is read and where its staged Parquet copy lives (a URL)."""

    format: str
    compression: str | None
    encoding: str | None  # CSV/TSV: the file's text encoding (None: UTF-8)
    data: str  # URL of the staged Parquet copy


def format_of(name: str, chosen: str = "auto") -> tuple[str, str | None] | None:
    """``(format, compression)`` of a file by its name (``chosen``: the format the user named), or
    None when the name does not tell (under ``auto``)."""
    lower = posixpath.basename(name).lower()
    compression = next((c for s, c in COMPRESSIONS.items() if lower.endswith(s)), None)
    if compression:
        lower = lower[: lower.rindex(".")]
    if chosen != "auto":
        return chosen, (compression if chosen in TEXT_FORMATS else None)
    fmt = next((f for s, f in SUFFIXES.items() if lower.endswith(s)), None)
    if fmt is None or (fmt == "parquet" and compression):
        return None
    return fmt, compression


def unknown_format_hint(name: str, text: bool = False) -> str:
    """What to tell a user whose file's name does not say its format (``text``: plain text is a
    choice too, as for a single file)."""
    lower = posixpath.basename(name).lower()
    for suffix in COMPRESSIONS:
        lower = lower.removesuffix(suffix)
    hint = next((h for s, h in AMBIGUOUS.items() if lower.endswith(s)), None)
    choices = "text|parquet|csv|tsv|jsonl" if text else "parquet|csv|tsv|jsonl"
    return hint or f"name it *.parquet, *.csv, *.tsv or *.jsonl, or choose with --format {choices}"


def staged_source(file_key: str, fmt: str, compression: str | None, encoding: str | None,
                  staging: Store) -> Staged:
    """Where the staged copy of a file (by its content-addressed key) and these settings lives."""
    settings = f"{fmt}\0{compression}\0{encoding}\0{STAGING_FORMAT}"
    name = f"{file_key}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}.parquet"
    return Staged(fmt, compression, encoding, staging.url_of(name))


@contextmanager
def _open_text(fs: fsspec.AbstractFileSystem, path: str, compression: str | None) -> Iterator[IO[bytes]]:
    with fs.open(path, "rb") as raw:
        if compression is None:
            yield raw
        elif compression == "xz":  # not one of pyarrow's codecs
            with lzma.open(raw) as stream:
                yield stream
        else:
            with pa.CompressedInputStream(raw, compression) as stream:
                yield stream


# Opens the bytes of a CSV/TSV/JSON Lines file, decompressed (called once per pass over it).
Opener = Callable[[], AbstractContextManager[IO[bytes]]]


def iter_text_batches(fs: fsspec.AbstractFileSystem, path: str, fmt: str, compression: str | None,
                      encoding: str | None, where: str) -> Iterator[pa.RecordBatch]:
    """The rows of a CSV, TSV or JSON Lines file, a block at a time; unreadable input is an
    ``InputDataError`` naming ``where`` (and the line, where the reader tells)."""
    yield from read_text_batches(lambda: _open_text(fs, path, compression), fmt, encoding, where)


def read_text_batches(opener: Opener, fmt: str, encoding: str | None, where: str) -> Iterator[pa.RecordBatch]:
    """``iter_text_batches`` on the bytes ``opener`` gives (a file, or a part held in memory)."""
    if fmt == "jsonl":
        yield from _json_batches(opener, where)
        return
    names = _csv_header(opener, fmt, encoding, where)
    # Binary first, so that invalid UTF-8 is reported with its row (pyarrow's string conversion
    # would only name the column); validated and cast to strings batch by batch.
    convert = pacsv.ConvertOptions(column_types={n: pa.binary() for n in names}, strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)
    # A row with too few or too many fields fails the file; pyarrow's message names the row.
    parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)
    read = pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding=encoding or "utf8", use_threads=False)
    row = 0
    try:
        with opener() as stream:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                yield _validated(batch, row, where)
                row += batch.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise InputDataError(f"{where} is not a readable {fmt.upper()} file: {err}") from None


def _csv_header(opener: Opener, fmt: str, encoding: str | None, where: str) -> list[str]:
    read = pacsv.ReadOptions(block_size=1 << 16, encoding=encoding or "utf8", use_threads=False)
    parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)
    try:
        with opener() as stream:
            names = pacsv.open_csv(stream, read_options=read, parse_options=parse).schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        if "Empty CSV file" in str(err):
            raise InputDataError(f"{where} is empty: a {fmt.upper()} corpus needs a header line") from None
        raise InputDataError(f"{where} is not a readable {fmt.upper()} file: {err}") from None
    if len(set(names)) != len(names):
        raise InputDataError(f"{where}: the header names a column twice ({names})")
    return names


def _validated(batch: pa.RecordBatch, first_row: int, where: str) -> pa.RecordBatch:
    """A batch of binary CSV fields as strings; the first invalid UTF-8 field is named by row."""
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            columns.append(column.cast(pa.string()))
        except pa.ArrowInvalid:
            for i, value in enumerate(column.to_pylist()):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as err:
                    bad = value[err.start:err.end].hex()
                    raise InputDataError(f"{where}: row {first_row + i} (column {name!r}) is not valid "
                                         f"UTF-8 at byte offset {err.start} (0x{bad}); give "
                                         "--text-encoding if the file is in another encoding") from None
            raise
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _json_batches(opener: Opener, where: str) -> Iterator[pa.RecordBatch]:
    read = pajson.ReadOptions(block_size=BLOCK_BYTES, use_threads=False)
    try:
        with opener() as stream:
            yield from pajson.open_json(stream, read_options=read)
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        if "Empty JSON file" in str(err):
            return
        hint = (" (a column's type changed after the first rows: give it one type in every row)"
                if "changed" in str(err) or "unexpected" in str(err).lower() else "")
        raise InputDataError(f"{where} is not a readable JSON Lines file{hint}: {err}") from None


def stage(input: Store, path: str, source: Staged) -> None:
    """Write the staged Parquet copy of a CSV/TSV/JSON Lines file (one streaming pass), atomically.

    Concurrent stagings of one file in a process wait for each other; across processes both write the
    same bytes and the last publish wins.
    """
    with _STAGING_LOCK:
        lock = _STAGING_LOCKS.setdefault(source.data, threading.Lock())
    with lock:
        target = Store(source.data, input.storage_options)
        if target.exists():
            return
        where = input.describe(path)
        logger.info("staging %s as Parquet at %s", where, source.data)
        batches = iter_text_batches(input.fs, path, source.format, source.compression, source.encoding,
                                    where)
        with target.writing() as out:
            _write_row_groups(batches, out, where)


def _write_row_groups(batches: Iterator[pa.RecordBatch], out: IO[bytes], where: str) -> None:
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in batches:
            if writer is None:
                schema = batch.schema
                writer = pq.ParquetWriter(out, schema)
            elif not batch.schema.equals(schema):
                raise InputDataError(f"{where}: its columns change within the file ({schema} then "
                                     f"{batch.schema})")
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= STAGED_ROW_GROUP_ROWS:
                table = pa.Table.from_batches(pending)
                writer.write_table(table.slice(0, STAGED_ROW_GROUP_ROWS),
                                   row_group_size=STAGED_ROW_GROUP_ROWS)
                rest = table.slice(STAGED_ROW_GROUP_ROWS)
                pending, pending_rows = rest.to_batches(), rest.num_rows
        if writer is None:  # no rows and no header: an empty JSON Lines file
            writer = pq.ParquetWriter(out, pa.schema([]))
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=STAGED_ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()


@contextmanager
def open_data(input: Store, path: str, staged: Staged | None) -> Iterator[IO[bytes]]:
    """A corpus file's Parquet data, open for reading: the file itself, or its staged copy (staged
    now if it is missing, e.g. deleted after the last verified run). No existence check before the
    open: a chunk read costs no extra request on an object store."""
    if staged is None:
        with input.fs.open(path, "rb") as f:
            yield f
        return
    fs, data_path = fsspec.core.url_to_fs(staged.data, **input.storage_options)
    try:
        f = fs.open(data_path, "rb")
    except FileNotFoundError:
        fs.invalidate_cache(posixpath.dirname(data_path))
        stage(input, path, staged)
        f = fs.open(data_path, "rb")
    with f:
        yield f
