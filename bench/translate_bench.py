"""Benchmark corpus translation through the real flow: sentences/s and tokens/s (greedy and beam),
peak RSS for growing corpora, and the share of wall time spent outside the model (I/O, planning,
verification, Prefect). Every measurement runs in a fresh subprocess, so peak RSS is per run.

The corpus repeats the Bible test split (unique ids ``<verse>#<copy>``) up to the requested size.
Without PREFECT_API_URL a loopback ``prefect server start`` is run for the benchmark's duration, so
no run pays for starting a temporary server. The translation memory is off: the corpus repeats the
same sentences, which a memory would serve after the first chunk (``bench/incremental.py`` measures it).

    python bench/translate_bench.py --model store/models/bible/v1 --out bench/results/translate-cpu.json
    python bench/translate_bench.py --model <tiny package> --rows 2000 --sizes 1000 2000 --beam 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from common import add_run_options, emit, load_average, peak_rss_mb, prefect_server, run_child

from s2s_core.inference.precision import DEFAULT_PRECISION, PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bible-es-en" / "test.parquet"


def build_corpus(base: Path, rows: int, path: Path, row_group_rows: int) -> Path:
    """Repeat ``base`` (id, src) to ``rows`` rows with unique ids, written one row group at a time."""
    if path.exists():
        return path
    source = pq.read_table(base, columns=["id", "src"])
    schema = pa.schema([("id", pa.string()), ("src", pa.string())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        written, copy = 0, 0
        pending: list[pa.Table] = []
        while written < rows:
            take = min(source.num_rows, rows - written)
            ids = [f"{i}#{copy}" for i in source.column("id").to_pylist()[:take]]
            pending.append(pa.table({"id": ids, "src": source.column("src").slice(0, take)}, schema=schema))
            written, copy = written + take, copy + 1
            if sum(t.num_rows for t in pending) >= row_group_rows or written == rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
                pending = []
    tmp.rename(path)
    return path


def measured_run(spec: dict) -> dict:
    """One measured translation (in this fresh process): the flow end to end, then its manifest."""
    from flows.translate import run_translation
    from tasks.config import TranslateConfig

    config = TranslateConfig(model=spec["model"], input=spec["corpus"], output=spec["output"],
                             chunk_rows=spec["chunk_rows"], workers=spec["workers"], device=spec["device"],
                             precision=spec["precision"], use_memory=False,
                             decode={"beam_size": spec["beam"], "max_tokens": spec["max_tokens"]})
    started = time.perf_counter()
    result = run_translation(config)
    wall = time.perf_counter() - started
    manifest = json.loads(Path(spec["output"], "manifest.json").read_text())
    seconds = manifest["seconds"]
    model_seconds = seconds["translate"]
    rows, tokens = manifest["rows_out"], manifest["target_tokens"]
    return {
        "rows": rows, "beam": spec["beam"], "precision": manifest["precision"], "workers": spec["workers"],
        "chunks": manifest["chunks"]["count"],
        "wall_seconds": round(wall, 2),
        "sentences_per_second": round(rows / wall, 1),
        "target_tokens_per_second": round(tokens / wall, 1),
        "model_seconds": round(model_seconds, 2),
        "model_sentences_per_second": round(rows / model_seconds, 1),
        "model_target_tokens_per_second": round(tokens / model_seconds, 1),
        # Model time is summed over chunks; with one worker it is a share of the wall time. The rest
        # is reading, writing, planning, verification, model loading and Prefect's own work.
        "outside_model_share": round(1 - model_seconds / (wall * spec["workers"]), 3),
        "outside_model_seconds": {"read": seconds["read"], "load": seconds["load"], "write": seconds["write"],
                                  "plan_verify_prefect": round(wall - seconds["total"] / spec["workers"], 2)},
        "statuses": result["statuses"],
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(spec: dict, env: dict) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"run of {spec['rows']} rows, beam {spec['beam']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def prefect_api(home: Path) -> Iterator[str]:
    """PREFECT_API_URL if set, else a loopback Prefect server (no services) started for the benchmark."""
    with prefect_server(home, services=False) as (url, _):
        yield url


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="model package URL (required)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Parquet with id and src columns")
    parser.add_argument("--rows", type=int, default=100_000, help="corpus size for the throughput runs")
    parser.add_argument("--beam", type=int, nargs="+", default=[1, 5], help="beam sizes (1 = greedy)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="corpus sizes for the peak-RSS comparison (greedy, first --beam)")
    parser.add_argument("--row-group-rows", type=int, default=10_000, help="row group size of the corpus")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION)
    add_run_options(parser)
    args = parser.parse_args(argv)
    if (result := run_child(args, measured_run)) is not None:
        return result
    if not args.model:
        parser.error("--model is required")
    if not args.data.exists():
        parser.error(f"no corpus at {args.data}")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2s-translate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    runs = {(args.rows, b) for b in args.beam} | {(n, args.beam[0]) for n in args.sizes}
    results = []
    with prefect_api(workdir / "prefect-home") as api:
        env = {**os.environ, "PREFECT_API_URL": api}
        for rows, beam in sorted(runs, key=lambda rb: (rb[1], rb[0])):
            corpus = build_corpus(args.data, rows, workdir / f"corpus-{rows}.parquet", args.row_group_rows)
            output = workdir / f"out-{rows}-beam{beam}-{args.precision}-{time.strftime('%H%M%S')}"
            spec = {"model": args.model, "corpus": str(corpus), "output": str(output), "beam": beam,
                    "chunk_rows": args.chunk_rows, "workers": args.workers, "device": args.device,
                    "max_tokens": args.max_tokens, "rows": rows, "precision": args.precision}
            print(f"translating {rows} rows, beam {beam} ...", file=sys.stderr)
            results.append(measure(spec, env))
    throughput = {("greedy" if r["beam"] == 1 else f"beam{r['beam']}"): r
                  for r in results if r["rows"] == args.rows}
    rss = {str(r["rows"]): r["peak_rss_mb"]
           for r in results if r["beam"] == args.beam[0] and r["rows"] in args.sizes}

    result = {
        "benchmark": "translate_bench", "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "torch": torch.__version__},
        "load_average_before": load_before, "load_average_after": load_average(),
        "model": args.model, "precision": args.precision,
        "corpus": {"base": str(args.data), "rows": args.rows, "chunk_rows": args.chunk_rows,
                   "row_group_rows": args.row_group_rows, "workers": args.workers},
        "throughput": throughput,
        "peak_rss_mb": rss,
        "rss_growth_mb": round(max(rss.values()) - min(rss.values()), 1) if len(rss) > 1 else None,
        "runs": results,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
