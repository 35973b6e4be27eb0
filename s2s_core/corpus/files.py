"""Parquet corpora on any fsspec URL: find the files, cut them into chunks, read a chunk.

A corpus is one Parquet file, a directory (or prefix) of Parquet files, or a glob, named by the
input ``Store``'s URL. Files are taken in sorted path order and each is cut into chunks of about
``chunk_rows`` rows along its row groups, so a chunk reads only the row groups it covers. Chunk ids
encode the file's index and the chunk's row range (``00003-0000012000-0000014000``): the same input
and ``chunk_rows`` always give the same ids, which is what lets a re-run recognise the chunks an
earlier run committed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import has_magic

from s2s_core.errors import InputDataError
from s2s_core.storage import Store

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
READ_BATCH_ROWS = 8192  # rows decoded at a time while slicing a chunk out of its row groups


@dataclass(frozen=True)
class InputFile:
    """One Parquet file of the corpus: its path inside the filesystem and its row-group sizes."""

    path: str
    row_groups: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.row_groups)


@dataclass(frozen=True)
class Chunk:
    """Rows ``[start, stop)`` of input file number ``file_index`` (file-local row numbers)."""

    id: str
    file_index: int
    path: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Corpus:
    """The input files of a corpus and their common schema."""

    url: str
    files: tuple[InputFile, ...]
    schema: pa.Schema

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _is_data_file(path: str) -> bool:
    # Hidden and underscore names are Spark/Hive side files (_SUCCESS, _metadata, .tmp-...).
    name = posixpath.basename(path)
    return name.lower().endswith(PARQUET_SUFFIXES) and not name.startswith(("_", "."))


def list_parquet_files(input: Store) -> list[str]:
    """Paths (inside the filesystem) of the Parquet files the input names, sorted; never empty."""
    fs, path = input.fs, input.path()
    input.refresh()  # s3fs caches listings: another process may have just written the input
    if has_magic(path):
        paths = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        paths = [p for p in fs.find(path) if _is_data_file(p)]
    elif fs.isfile(path):
        return [path]
    else:
        raise FileNotFoundError(f"input not found: {input.url}")
    if not paths:
        raise FileNotFoundError(f"no Parquet files in input {input.url}")
    return sorted(paths)


def open_corpus(input: Store) -> Corpus:
    """Read every file's footer; all files must share one schema (the parts will, too)."""
    files, schema = [], None
    for path in list_parquet_files(input):
        try:
            with input.fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
                file_schema = meta.schema.to_arrow_schema()
        except (pa.ArrowInvalid, OSError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise InputDataError(f"{input.describe(path)} is not a readable Parquet file: {err}") from err
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema, check_metadata=False):
            raise InputDataError(f"input files have different schemas: {input.describe(path)} has "
                             f"{_describe(file_schema)}, the first file {_describe(schema)}")
        files.append(InputFile(path, tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))))
    return Corpus(input.url, tuple(files), schema)


def check_columns(corpus: Corpus, text_column: str, id_column: str | None,
                  reserved: Sequence[str] = ()) -> None:
    """Raise ``InputDataError`` naming the problem if the corpus cannot be translated as asked."""
    names = corpus.schema.names
    for role, column in (("text", text_column), ("id", id_column)):
        if column is not None and column not in names:
            hint = "; name another with --id-column, or --id-column '' for none" if role == "id" else ""
            raise InputDataError(f"input {corpus.url} has no {role} column {column!r} "
                             f"(columns: {', '.join(names)}){hint}")
    text_type = corpus.schema.field(text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)
            or pa.types.is_null(text_type)):
        raise InputDataError(f"text column {text_column!r} of {corpus.url} holds {text_type}, not strings")
    clashes = [c for c in reserved if c in names]
    if clashes:
        raise InputDataError(f"input {corpus.url} already has column(s) {clashes}, which the output adds; "
                         "rename them first")


def chunk_id(file_index: int, start: int, stop: int) -> str:
    """Stable, sortable id: file index and row range (sorting ids gives corpus order)."""
    return f"{file_index:05d}-{start:010d}-{stop:010d}"


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
        chunks.extend(Chunk(chunk_id(index, a, b), index, file.path, a, b) for a, b in ranges if b > a)
    return chunks


def iter_chunk_batches(input: Store, chunk: Chunk, columns: Sequence[str] | None = None,
                       batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches holding exactly the chunk's rows, reading only the row groups it covers."""
    with input.fs.open(chunk.path, "rb") as f:
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


def iter_column(input: Store, corpus: Corpus, column: str, batch_rows: int = 65536) -> Iterator[pa.Array]:
    """One column of the whole corpus in corpus order, a batch at a time (bounded memory)."""
    for file in corpus.files:
        with input.fs.open(file.path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=[column],
                                                         use_threads=False):
                yield batch.column(0)


def _describe(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name}: {f.type}" for f in schema) + ")"
