"""Turn a raw parallel corpus into clean train/dev/test frames: read, clean and filter, split, write.

Inputs are Parquet, TSV or a pair of text files at any fsspec URL (local path, ``file://``, ``s3://``).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from s2s_core.errors import InputDataError
from s2s_core.storage import read_bytes, write_bytes
from s2s_core.text.tokenizer import clean_text

COLUMNS = ("id", "src", "tgt")  # every frame this module returns has exactly these string columns
# The rules of clean_parallel, in the order they are applied; a row is counted under the first rule
# that removes it, so the counts add up to the number of rows removed.
FILTER_RULES = ("empty", "too_short", "too_long", "length_ratio", "duplicate")


@dataclass(frozen=True)
class PrepareConfig:
    """How a parallel corpus is read, filtered and split (lengths count characters after ``clean_text``)."""

    src_column: str = "src"
    tgt_column: str = "tgt"
    id_column: str | None = "id"  # None, or absent from the file: ids are 1-based row numbers
    min_chars: int = 1  # per side
    max_chars: int = 1000  # per side
    # Rows with longer / max(shorter, ratio_min_chars) above this are dropped as misaligned (None: keep).
    max_length_ratio: float | None = 3.0
    # A side shorter than this counts as this long in the ratio: very short segments ("Amen." /
    # "Así sea.") legitimately differ a lot in relative length, while a 3-character source paired
    # with a 400-character target is still caught.
    ratio_min_chars: int = 10
    # A float in [0, 1) is a fraction of the rows (rounded, at least one row when positive);
    # an int is a row count.
    dev_size: float | int = 0.02
    test_size: float | int = 0.02
    seed: int = 1234  # of the shuffle that picks dev and test rows
    dedupe: bool = True  # drop exact (src, tgt) repeats after cleaning, keeping the first
    # Keep line breaks and tabs through cleaning (software messages, where they are protected spans
    # and training masks them as placeholders); off: they become spaces.
    keep_line_breaks: bool = False

    def __post_init__(self) -> None:
        if self.src_column == self.tgt_column:
            raise ValueError(f"src_column and tgt_column must differ, both are {self.src_column!r}")
        if self.min_chars < 0 or self.max_chars < max(self.min_chars, 1):
            raise ValueError(
                f"need 0 ≤ min_chars ≤ max_chars and max_chars ≥ 1, got {self.min_chars}, {self.max_chars}"
            )
        if self.max_length_ratio is not None and self.max_length_ratio < 1.0:
            raise ValueError(f"max_length_ratio must be ≥ 1 or None, got {self.max_length_ratio}")
        if self.ratio_min_chars < 1:
            raise ValueError(f"ratio_min_chars must be ≥ 1, got {self.ratio_min_chars}")
        for name in ("dev_size", "test_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a fraction or a row count, got {value!r}")
            if isinstance(value, float) and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} as a fraction must be in [0, 1), got {value}")
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{name} as a row count must be ≥ 0, got {value}")


# ----------------------------------------------------------------------------------------------- read


def read_parallel(
    url: str,
    config: PrepareConfig | None = None,
    storage_options: dict[str, Any] | None = None,
    tgt_url: str | None = None,
) -> pl.DataFrame:
    """Read a parallel corpus into a frame with string columns ``id, src, tgt`` (nulls kept).

    Formats: Parquet (``.parquet``/``.pq``), TSV (``.tsv``/``.tsv.gz``; a header row naming the
    configured columns, or headerless ``src<TAB>tgt`` / ``id<TAB>src<TAB>tgt``), or a pair of
    line-aligned UTF-8 text files when ``tgt_url`` is given (``url`` is then the source side).
    """
    config = config or PrepareConfig()
    options = storage_options or {}
    if tgt_url is not None:
        df = _read_text_pair(url, tgt_url, options)
    else:
        name = _path_of(url).lower()
        if name.endswith((".parquet", ".pq")):
            df = _read_parquet(url, config, options)
        elif name.endswith((".tsv", ".tsv.gz")):
            df = _read_tsv(url, config, options)
        else:
            raise InputDataError(
                f"{url}: unknown corpus format (expected .parquet, .pq, .tsv or .tsv.gz, "
                "or a text pair with tgt_url)"
            )
    if df.height == 0:
        raise InputDataError(f"{url}: no rows")
    return df


def _path_of(url: str) -> str:
    """The path part of a URL, without any query string, for suffix checks."""
    return url.split("?", 1)[0].rstrip("/")


def _fetch(url: str, options: dict[str, Any]) -> bytes:
    """All bytes of ``url``; a missing file raises FileNotFoundError naming the URL."""
    try:
        return read_bytes(url, **options)
    except FileNotFoundError:
        raise FileNotFoundError(f"input file not found: {url}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"input is a directory, not a file: {url}") from None


def _decode(url: str, data: bytes, what: str = "") -> str:
    """Strict UTF-8 decode (a leading BOM is dropped); errors name the file, byte offset and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # Counting newlines is cheap and only happens on the error path.
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.end].hex()
        raise InputDataError(
            f"{url}: not valid UTF-8 at {what}byte offset {e.start} (line {line}, bytes 0x{bad})"
        ) from None


def _stringify(df: pl.DataFrame, url: str) -> pl.DataFrame:
    """Cast ``id, src, tgt`` to strings so every reader returns the same schema."""
    try:
        return df.select(pl.col(c).cast(pl.String) for c in COLUMNS)
    except pl.exceptions.PolarsError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputDataError(f"{url}: columns cannot be read as text: {reason}") from None


def _select_columns(df: pl.DataFrame, url: str, config: PrepareConfig) -> pl.DataFrame:
    """Pick and rename the configured columns to ``id, src, tgt``; ids default to row numbers."""
    available = ", ".join(df.columns) or "(none)"
    for column in (config.src_column, config.tgt_column):
        if column not in df.columns:
            raise InputDataError(f"{url}: missing column {column!r} (available: {available})")
    exprs = [pl.col(config.src_column).alias("src"), pl.col(config.tgt_column).alias("tgt")]
    if config.id_column is not None and config.id_column in df.columns:
        exprs.insert(0, pl.col(config.id_column).alias("id"))
    else:
        exprs.insert(0, pl.int_range(1, pl.len() + 1).alias("id"))
    return _stringify(df.select(exprs), url)


def _read_parquet(url: str, config: PrepareConfig, options: dict[str, Any]) -> pl.DataFrame:
    data = _fetch(url, options)
    if not data:
        raise InputDataError(f"{url}: empty file (no rows)")
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputDataError(f"{url}: not a readable Parquet file: {reason}") from None
    return _select_columns(df, url, config)


def _read_tsv(url: str, config: PrepareConfig, options: dict[str, Any]) -> pl.DataFrame:
    data = _fetch(url, options)
    what = ""
    if _path_of(url).lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise InputDataError(f"{url}: not a readable gzip file: {e}") from None
        what = "decompressed "
    text = _decode(url, data, what)  # validates UTF-8 before polars sees the bytes
    if not text.strip():
        raise InputDataError(f"{url}: empty file (no rows)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = text.split("\n", 1)[0].rstrip("\r").split("\t")
    # A first line naming any configured column is a header (so a misnamed column is reported as
    # missing rather than read as a data row); otherwise the file is headerless.
    named = {config.src_column, config.tgt_column} | ({config.id_column} if config.id_column else set())
    has_header = bool(named & set(first))
    if has_header:
        columns = first
    elif len(first) == 2:
        columns = ["src", "tgt"]
    elif len(first) == 3:
        columns = ["id", "src", "tgt"]
    else:
        raise InputDataError(
            f"{url}: first line has {len(first)} tab-separated fields and names none of the columns "
            f"{sorted(named)}; headerless TSV needs 2 (src, tgt) or 3 (id, src, tgt) fields"
        )
    try:
        # quote_char=None: corpora contain unbalanced quotes that are text, not CSV quoting.
        df = pl.read_csv(
            io.BytesIO(data),
            separator="\t",
            quote_char=None,
            has_header=has_header,
            new_columns=None if has_header else columns,
            infer_schema=False,
        )
    except pl.exceptions.PolarsError as e:
        raise InputDataError(_tsv_error(url, text, len(columns), e)) from None
    if df.height == 0:
        raise InputDataError(f"{url}: no rows (only a header)")
    if has_header:
        return _select_columns(df, url, config)
    if "id" not in df.columns:
        df = df.with_columns(pl.int_range(1, pl.len() + 1).alias("id"))
    return _stringify(df, url)


def _tsv_error(url: str, text: str, n_fields: int, error: Exception) -> str:
    """A one-line message for a TSV polars rejected, naming the first ragged line when there is one."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        count = line.count("\t") + 1
        if line and count != n_fields:
            return f"{url}: line {number} has {count} tab-separated fields, expected {n_fields}"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{url}: malformed TSV: {reason}"


def _lines(text: str) -> list[str]:
    """Split on ``\\n`` only (not str.splitlines, which also splits on U+2028, \\x0b, \\x1c… and would
    misalign the two sides); a final newline does not start an extra line; ``\\r\\n`` is accepted."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_text_pair(src_url: str, tgt_url: str, options: dict[str, Any]) -> pl.DataFrame:
    src = _lines(_decode(src_url, _fetch(src_url, options)))
    tgt = _lines(_decode(tgt_url, _fetch(tgt_url, options)))
    for url, lines in ((src_url, src), (tgt_url, tgt)):
        if not lines:
            raise InputDataError(f"{url}: empty file (no rows)")
    if len(src) != len(tgt):
        raise InputDataError(
            f"line counts differ: {src_url} has {len(src)} lines, {tgt_url} has {len(tgt)} lines"
        )
    ids = [str(i) for i in range(1, len(src) + 1)]  # 1-based: the line number in both files
    return pl.DataFrame({"id": ids, "src": src, "tgt": tgt}, schema=dict.fromkeys(COLUMNS, pl.String))


# ---------------------------------------------------------------------------------------------- clean


def _clean_series(series: pl.Series, keep_line_breaks: bool = False) -> pl.Series:
    """clean_text over a whole column (nulls become empty strings, so they fail the ``empty`` rule)."""
    return pl.Series(series.name, [clean_text(value, keep_line_breaks) for value in series], dtype=pl.String)


def clean_parallel(
    df: pl.DataFrame, config: PrepareConfig | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Normalize both sides with ``clean_text`` and apply the filters; return the kept rows and counts.

    Rules, in order (a row is counted once, under the first rule that drops it): ``empty`` (null or
    empty after normalization on either side), ``too_short`` / ``too_long`` (character bounds on
    either side), ``length_ratio``, ``duplicate`` (exact (src, tgt) repeat after normalization; the
    first occurrence is kept). Row order is preserved. The report has ``input_rows``, one count per
    rule and ``output_rows``.
    """
    config = config or PrepareConfig()
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"clean_parallel needs columns id, src, tgt; missing {missing} (have {df.columns})")

    src_len, tgt_len = pl.col("src").str.len_chars(), pl.col("tgt").str.len_chars()
    rule = (
        pl.when((src_len == 0) | (tgt_len == 0))
        .then(pl.lit("empty"))
        .when((src_len < config.min_chars) | (tgt_len < config.min_chars))
        .then(pl.lit("too_short"))
        .when((src_len > config.max_chars) | (tgt_len > config.max_chars))
        .then(pl.lit("too_long"))
    )
    if config.max_length_ratio is not None:
        longer = pl.max_horizontal(src_len, tgt_len).cast(pl.Float64)
        shorter = pl.max_horizontal(pl.min_horizontal(src_len, tgt_len), pl.lit(config.ratio_min_chars))
        rule = rule.when(longer / shorter > config.max_length_ratio).then(pl.lit("length_ratio"))
    rule = rule.otherwise(pl.lit(None, dtype=pl.String))

    clean = partial(_clean_series, keep_line_breaks=config.keep_line_breaks)
    normalized = (
        df.lazy()
        .select(
            pl.col("id").cast(pl.String),
            pl.col("src").cast(pl.String).map_batches(clean, return_dtype=pl.String),
            pl.col("tgt").cast(pl.String).map_batches(clean, return_dtype=pl.String),
        )
        .with_columns(rule.alias("_dropped_by"))
    )
    if config.dedupe:
        # Only rows that survived the earlier rules compete for "first occurrence".
        kept = pl.col("_dropped_by").is_null()
        first = pl.struct("src", "tgt").is_first_distinct().over(kept)
        normalized = normalized.with_columns(
            pl.when(kept & ~first)
            .then(pl.lit("duplicate"))
            .otherwise(pl.col("_dropped_by"))
            .alias("_dropped_by")
        )
    marked = normalized.collect()

    dropped = dict(marked.get_column("_dropped_by").drop_nulls().value_counts().iter_rows())
    out = marked.filter(pl.col("_dropped_by").is_null()).select(COLUMNS)
    report = {"input_rows": df.height}
    report.update({name: int(dropped.get(name, 0)) for name in FILTER_RULES})
    report["output_rows"] = out.height
    # The counts must account for every row; a mismatch would mean a bug in the rules above.
    assert report["input_rows"] == sum(report[name] for name in FILTER_RULES) + report["output_rows"]
    return out, report


# ---------------------------------------------------------------------------------------------- split


def _split_count(size: float | int, n_rows: int) -> int:
    """Rows for a dev/test size given as a fraction or an absolute count."""
    if isinstance(size, float):
        return max(1, round(size * n_rows)) if size > 0 and n_rows > 0 else 0
    return int(size)


def split_parallel(df: pl.DataFrame, config: PrepareConfig | None = None) -> dict[str, pl.DataFrame]:
    """Split into disjoint ``train``/``dev``/``test`` covering all rows, by a seeded shuffle.

    The same rows and seed always give the same split; each part keeps the input's row order.
    """
    config = config or PrepareConfig()
    n = df.height
    n_dev, n_test = _split_count(config.dev_size, n), _split_count(config.test_size, n)
    if n_dev + n_test >= n:
        raise InputDataError(f"dev ({n_dev}) + test ({n_test}) rows leave no training rows out of {n}")
    # A seeded numpy Generator (PCG64) gives the same permutation for the same seed and row count.
    order = np.random.default_rng(config.seed).permutation(n)
    parts = {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}
    # Sorting the chosen indices keeps every split in corpus order (readable diffs, stable files).
    return {name: df[np.sort(parts[name]).tolist()] for name in ("train", "dev", "test")}


# ---------------------------------------------------------------------------------------------- write


def read_parquet(url: str, storage_options: dict[str, Any] | None = None,
                 columns: list[str] | None = None) -> pl.DataFrame:
    """Read a (small) Parquet file from any fsspec URL."""
    return pl.read_parquet(io.BytesIO(read_bytes(url, **(storage_options or {}))), columns=columns)


def write_parquet(df: pl.DataFrame, url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``df`` as Parquet to ``url`` atomically (readers never see a partial file)."""
    buffer = io.BytesIO()
    df.write_parquet(buffer, compression="zstd")
    write_bytes(url, buffer.getvalue(), **(storage_options or {}))


__all__ = [
    "COLUMNS",
    "FILTER_RULES",
    "PrepareConfig",
    "clean_parallel",
    "read_parallel",
    "read_parquet",
    "split_parallel",
    "write_parquet",
]
