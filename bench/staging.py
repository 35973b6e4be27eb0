"""Benchmark staging CSV, TSV and JSON Lines corpus files as Parquet: rows/s, MB/s and peak RSS for
growing files (memory must not grow with the file: one block of text and one row group at a time).

Each file repeats the Bible test split (unique ids ``<verse>#<copy>``, texts with commas, quotes and
line breaks as CSV quoting must carry) up to the requested rows, written by pyarrow (CSV/TSV) or
polars (JSON Lines), optionally gzip-compressed. Every measurement stages one file in a fresh
subprocess (peak RSS is per run) and checks that the staged copy holds every row.

    python bench/staging.py --sizes 100000 1000000 --gzip --out bench/results/staging-cpu.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from common import emit, load_average, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bible-es-en" / "test.parquet"
SUFFIX = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl"}


def write_file(data: Path, fmt: str, rows: int, directory: Path, compress: bool) -> Path:
    base = pl.read_parquet(data).select("id", "src")
    copies = -(-rows // base.height)
    frame = pl.concat([base.with_columns(pl.col("id") + f"#{k}") for k in range(copies)]).head(rows)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0)
                               .then(pl.col("src") + ' "dijo",\nY').otherwise(pl.col("src")).alias("src"))
    path = directory / f"corpus-{rows}{SUFFIX[fmt]}"
    if fmt == "jsonl":
        frame.write_ndjson(path)
    else:
        options = pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",")
        pacsv.write_csv(frame.to_arrow(), path, options)
    if compress:
        with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()
        path = Path(f"{path}.gz")
    return path


def measure(spec: dict) -> dict:
    """Stage one file (in this fresh process) and report rate and peak RSS."""
    from s2s_core.corpus.formats import format_of, stage, staged_source
    from s2s_core.storage import Store

    path = Path(spec["path"])
    baseline = peak_rss_mb()
    fmt, compression = format_of(path.name)
    staging = Store(spec["staging"])
    source = staged_source("bench", fmt, compression, None, staging)
    started = time.perf_counter()
    stage(Store(str(path.parent)), str(path), source)
    seconds = time.perf_counter() - started
    rows = pq.ParquetFile(Store(source.data).path()).metadata.num_rows
    return {"seconds": round(seconds, 3), "rows_staged": rows, "peak_rss_mb": peak_rss_mb(),
            "rss_before_mb": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "tsv", "jsonl"], choices=list(SUFFIX))
    parser.add_argument("--gzip", action="store_true", help="also measure each file gzip-compressed")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2s-staging-"))
    runs = []
    for fmt in args.formats:
        for compress in (False, True) if args.gzip else (False,):
            for rows in args.sizes:
                directory = workdir / f"{fmt}-{rows}-{int(compress)}"
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir(parents=True)
                path = write_file(args.data, fmt, rows, directory, compress)
                spec = {"path": str(path), "staging": str(directory / "_staged")}
                child = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True,
                                       capture_output=True, text=True, cwd=ROOT)
                result = json.loads(child.stdout.strip().splitlines()[-1])
                assert result["rows_staged"] == rows, result
                size_mb = path.stat().st_size / 2**20
                runs.append({"format": fmt, "gzip": compress, "rows": rows, "file_mb": round(size_mb, 1),
                             **result, "rows_per_second": round(rows / result["seconds"]),
                             "mb_per_second": round(size_mb / result["seconds"], 1)})
                print(json.dumps(runs[-1]), file=sys.stderr)
                shutil.rmtree(directory)
    emit({"benchmark": "staging", "machine": platform.processor() or platform.machine(),
          "pyarrow": pa.__version__, "load_average": load_average(), "runs": runs}, args.out)


if __name__ == "__main__":
    main()
