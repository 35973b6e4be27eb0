"""The file format of output parts: Parquet (the default), or CSV, TSV or JSON Lines (``--output-format``).

A part holds its input rows' columns and the columns the translation adds. Parquet keeps every type.
CSV and TSV hold text: nested values (``flags``, ``nbest``, a JSON Lines input's objects) are
written as JSON text, nulls as empty fields, and quoting is what pyarrow, pandas and polars write
(only where needed). JSON Lines keep numbers, lists and objects. Read back (verification, a retry of
failed rows), the added columns get their own types again; the input's columns are what the format
holds (CSV/TSV: strings, exactly as written).
"""

from __future__ import annotations

import io
import json
from contextlib import nullcontext

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from s2s_core.corpus.columns import BINARY, kind
from s2s_core.corpus.formats import read_text_batches
from s2s_core.errors import InputDataError

PART_FORMATS = ("parquet", "csv", "tsv", "jsonl")
SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl"}
NBEST_TYPE = pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())]))
FLAGS_TYPE = pa.list_(pa.string())
# The types of the columns a translation adds (``chunk.output_columns``), restored when a text part is
# read back.
ADDED_TYPES = {"translation": pa.string(), "score": pa.float64(), "status": pa.string(),
               "segments": pa.int32(), "flags": FLAGS_TYPE, "nbest": NBEST_TYPE}
_NESTED = (pa.types.is_list, pa.types.is_large_list, pa.types.is_struct, pa.types.is_map,
           pa.types.is_fixed_size_list)


def suffix(fmt: str) -> str:
    if fmt not in SUFFIXES:
        raise ValueError(f"unknown output format {fmt!r}: choose one of {', '.join(PART_FORMATS)}")
    return SUFFIXES[fmt]


def encode(table: pa.Table, fmt: str) -> bytes:
    """A part's bytes in ``fmt`` (Parquet: one row group)."""
    buffer = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buffer, row_group_size=max(1, table.num_rows))
    elif fmt in ("csv", "tsv"):
        options = pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",", quoting_style="needed")
        pacsv.write_csv(_as_text_columns(table), buffer, options)
    elif fmt == "jsonl":
        pl.from_arrow(_without_bytes(table)).write_ndjson(buffer)
    else:
        suffix(fmt)  # raises: unknown format
    return buffer.getvalue()


def decode(data: bytes, fmt: str, where: str, columns: list[str] | None = None) -> pa.Table:
    """A part read back from its bytes (``columns``: only those), the added columns in their types."""
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data), columns=columns, use_threads=False)
    batches = list(read_text_batches(lambda: nullcontext(io.BytesIO(data)), fmt, None, where))
    table = pa.Table.from_batches(batches) if batches else pa.table({})
    if columns is not None:
        table = table.select(columns)
    return _restore_added(table, fmt)


def _as_text_columns(table: pa.Table) -> pa.Table:
    """CSV cannot hold nested values or raw bytes: nested columns become JSON text."""
    table = _without_bytes(table)
    for i, field in enumerate(table.schema):
        type_ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if any(test(type_) for test in _NESTED):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
        elif pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(type_))
    return table


def _without_bytes(table: pa.Table) -> pa.Table:
    """Binary columns as UTF-8 text, for formats that hold text only; bytes that are not UTF-8 are
    refused (the text column was decoded already: ``chunk.translate_chunk`` writes its texts)."""
    for i, field in enumerate(table.schema):
        if kind(field.type) == BINARY:
            try:
                table = table.set_column(i, field.name, pc.cast(table.column(i), pa.string()))
            except pa.ArrowInvalid:
                raise InputDataError(f"column {field.name!r} holds bytes that are not UTF-8 text, which a "
                                     "text output cannot hold; use --output-format parquet") from None
    return table


def _restore_added(table: pa.Table, fmt: str) -> pa.Table:
    for name, type_ in ADDED_TYPES.items():
        if name not in table.column_names:
            continue
        column = table.column(name)
        if fmt in ("csv", "tsv") and name in ("flags", "nbest"):  # JSON text, see _as_text_columns
            column = pa.array([json.loads(v) if v else None for v in column.to_pylist()], type_)
        elif fmt in ("csv", "tsv") and name in ("score", "segments"):  # an empty field is a null
            column = pc.cast(pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column), type_)
        elif not column.type.equals(type_):  # JSON Lines: [] reads as list<null>, 0 as int64
            column = pc.cast(column, type_)
        table = table.set_column(table.column_names.index(name), name, column)
    return table
