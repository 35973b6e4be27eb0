"""The id and text columns of a corpus, whatever encoding a writer chose for them.

Writers store the same strings in different Arrow types: ``string``, ``large_string`` (polars),
``string_view``, dictionary-encoded strings (pandas ``category``, Spark, many Parquet writers) and,
for text that was never validated, ``binary``. Columns are compared by *kind* (strings, integers,
binary, ...) so that a file written by another tool is not a type change, while a real one (ids that
were integers and are now strings) is.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from s2s_core.errors import InputDataError

STRING = "string"
BINARY = "binary"
INTEGER = "integer"
NULL = "null"  # a column of nulls only (pandas writes an all-None column so): compatible with any kind


def _value_type(type_: pa.DataType) -> pa.DataType:
    return type_.value_type if pa.types.is_dictionary(type_) else type_


def kind(type_: pa.DataType) -> str:
    """The kind of values a column type holds: ``string``, ``binary``, ``integer``, ``null``, or
    the type itself as text (``timestamp[us]``, ...) for anything else."""
    value = _value_type(type_)
    if pa.types.is_string(value) or pa.types.is_large_string(value) or pa.types.is_string_view(value):
        return STRING
    if (pa.types.is_binary(value) or pa.types.is_large_binary(value) or pa.types.is_binary_view(value)
            or pa.types.is_fixed_size_binary(value)):
        return BINARY
    if pa.types.is_integer(value):
        return INTEGER
    if pa.types.is_null(value):
        return NULL
    return str(value)


def check_encoding(encoding: str) -> str:
    """The codec's canonical name, or a clear error for an unknown one."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputDataError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None


def text_values(column: pa.Array | pa.ChunkedArray, encoding: str | None,
                where: Callable[[int], str]) -> list[str | None]:
    """The texts of a text column as Python strings (None for nulls), in any string encoding.

    Binary columns are decoded with ``encoding`` (strictly: a byte sequence that is not valid in it
    is an ``InputDataError`` naming the row, ``where(i)``, as the text path names the line).
    """
    if kind(column.type) != BINARY:
        return column.to_pylist()
    if encoding is None:
        raise InputDataError(f"{where(0)}: the text column holds bytes ({column.type}); give "
                             "--text-encoding utf-8 (or the encoding it is in) to read it as text")
    texts: list[str | None] = []
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            texts.append(None)
            continue
        try:
            texts.append(value.decode(encoding))
        except UnicodeDecodeError as err:
            bad = value[err.start:err.end].hex()
            raise InputDataError(f"{where(i)}: text is not valid {encoding} at byte offset {err.start} "
                                 f"(0x{bad})") from None
    return texts


def canonical_ids(ids: pa.Array | pa.ChunkedArray, as_text: bool = False) -> pa.Array:
    """Ids in one type per kind, so ids from files (or parts) written by other tools compare and
    hash alike: strings as ``large_string`` (dictionary, view and small offsets decoded), integers as
    ``int64`` (``uint64`` as their decimal text, which ``int64`` cannot hold). ``as_text``: every
    kind as its text (``large_string``), to compare with ids read back from CSV."""
    array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if as_text and not pa.types.is_large_string(array.type):
        return pc.cast(array, pa.large_string())
    value_kind = kind(array.type)
    if value_kind == STRING and not pa.types.is_large_string(array.type):
        return pc.cast(array, pa.large_string())
    if value_kind == INTEGER and not pa.types.is_int64(array.type):
        target = pa.large_string() if pa.types.is_uint64(array.type) else pa.int64()
        return pc.cast(array, target)
    if value_kind == BINARY and not pa.types.is_large_binary(array.type):
        return pc.cast(array, pa.large_binary())
    return array
