"""Benchmark incremental corpus translation: a re-run after 10% new rows and one rewritten file must
take a small share of the first run's wall time and end with exactly a from-scratch run's output.

The corpus holds distinct rows, each 1-3 Bible verses joined (unique ids), split over ``--files``
files. Steps, each a fresh subprocess running the real flow: translate the corpus; add ``--added``
(10%) new rows as new files and rewrite one file (a few rows changed); translate again into the same
output; translate today's input from scratch into a second output; compare the two outputs (ids,
translations, statuses, segments exactly, scores to 1e-5, part names). Prints JSON.
Without PREFECT_API_URL a loopback Prefect server runs for the benchmark's duration.

    python bench/incremental.py --model /tmp/benchstore/models/bench-bible/<version> \
        --out bench/results/incremental.json
    python bench/incremental.py --model /tmp/clean/store/models/bible-es-en-demo/<version> --rows 5000

The translation memory (a fresh one in the work directory) is on for the first and the incremental run,
so a rewritten file's unchanged rows are cheap; ``--no-memory`` turns it off. The from-scratch run
never uses it.
``--set key=value`` applies any other translate-config override to every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import add_run_options, emit, peak_rss_mb, run_child
from translate_bench import prefect_api

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bible-es-en" / "train.parquet"
# Which neighbouring verses make a row: row k of the corpus uses pattern k // verses at verse k % verses.
PATTERNS = ((0,), (0, 1), (0, 1, 2), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def distinct_rows(verses: list[str], count: int) -> list[str]:
    """``count`` distinct texts of 1-3 verses joined, in a fixed order."""
    seen: set[str] = set()
    rows: list[str] = []
    n = len(verses)
    for k in range(n * len(PATTERNS)):
        text = " ".join(verses[(k % n + offset) % n] for offset in PATTERNS[k // n])
        if text not in seen:
            seen.add(text)
            rows.append(text)
            if len(rows) == count:
                return rows
    raise ValueError(f"only {len(rows)} distinct rows can be made from {n} verses")


def write_files(directory: Path, ids: list[str], texts: list[str], first: int, files: int,
                row_group_rows: int) -> list[str]:
    """The rows split in order over ``files`` files ``part-<first>.parquet``, ...; their names."""
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [len(ids) * i // files for i in range(files + 1)]
    names = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        names.append(f"part-{first + i:04d}.parquet")
        table = pa.table({"id": pa.array(ids[a:b], pa.string()), "src": pa.array(texts[a:b], pa.string())})
        pq.write_table(table, directory / names[-1], row_group_size=row_group_rows)
    return names


def rewrite(path: Path, replacements: list[str], row_group_rows: int) -> None:
    """Rewrite a file with rows spread evenly over it given new (distinct) texts."""
    table = pq.read_table(path)
    texts = table.column("src").to_pylist()
    for k, text in enumerate(replacements):
        texts[k * len(texts) // len(replacements)] = text
    table = table.set_column(table.column_names.index("src"), "src", pa.array(texts, pa.string()))
    pq.write_table(table, path, row_group_size=row_group_rows)


def measured_run(spec: dict) -> dict:
    """One translation through the flow (in this fresh process): its wall time and manifest."""
    from flows.translate import translate_flow
    from tasks.config import TranslateConfig

    config = TranslateConfig(model=spec["model"], input=spec["input"], output=spec["output"],
                             chunk_rows=spec["chunk_rows"], workers=spec["workers"], device=spec["device"],
                             decode={"beam_size": spec["beam"], "max_tokens": spec["max_tokens"]})
    started = time.perf_counter()
    result = translate_flow(config, overrides=spec["overrides"] or None)
    wall = time.perf_counter() - started
    return {"wall_seconds": round(wall, 2), "rows_out": result["rows_out"], "this_run": result["this_run"],
            "changes": result["changes"], "stale_removed": result.get("stale_removed"),
            "statuses": result["statuses"], "memory": result.get("memory"), "peak_rss_mb": peak_rss_mb()}


def measure(spec: dict, env: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"translation into {spec['output']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_in_order(output: Path) -> pa.Table:
    from s2s_core.corpus.verify import output_parts
    from s2s_core.storage import Store

    return pa.concat_tables([pq.read_table(p) for p in output_parts(Store(str(output)))])


def compare(incremental: Path, scratch: Path) -> dict:
    """Whether two outputs hold the same rows (scores to 1e-5) in the same parts."""
    left, right = read_in_order(incremental), read_in_order(scratch)
    exact = ("id", "translation", "status", "segments")
    same = left.num_rows == right.num_rows and all(left.column(c).equals(right.column(c)) for c in exact)
    score_diff = None
    if left.num_rows == right.num_rows:
        scores = zip(left.column("score").to_pylist(), right.column("score").to_pylist(), strict=True)
        score_diff = max((abs(a - b) for a, b in scores), default=0.0)
    names = [{p.name for p in out.glob("part-*.parquet")} for out in (incremental, scratch)]
    parts = names[0] == names[1]
    return {"equal": bool(same and score_diff is not None and score_diff <= 1e-5 and parts),
            "rows": [left.num_rows, right.num_rows], "exact_columns_equal": same,
            "max_score_difference": score_diff, "same_part_names": parts}


def memory_overrides(enabled: bool, url: Path) -> list[str]:
    """Overrides that put the translation memory at ``url`` or turn it off (none if the config has none)."""
    return [f"memory={url}"] if enabled else ["use_memory=false"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="model package URL (required)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Parquet with a src column of verses")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the first day's corpus")
    parser.add_argument("--files", type=int, default=20, help="files of the first day's corpus")
    parser.add_argument("--added", type=float, default=0.10, help="share of new rows on the second day")
    parser.add_argument("--changed-rows", type=int, default=10, help="rows changed in the rewritten file")
    parser.add_argument("--row-group-rows", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=1)
    add_run_options(parser)
    parser.add_argument("--no-memory", action="store_true", help="turn the translation memory off")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="translate-config override for every run (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if (result := run_child(args, measured_run)) is not None:
        return result
    if not args.model:
        parser.error("--model is required")
    if not args.data.exists():
        parser.error(f"no verses at {args.data}")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2s-incremental-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, output, scratch = workdir / "corpus", workdir / "out", workdir / "scratch"
    memory = workdir / "memory"  # starts empty: the first run fills it, the second reuses it
    for path in (corpus, output, scratch, memory):
        shutil.rmtree(path, ignore_errors=True)
    added = round(args.rows * args.added)
    verses = pq.read_table(args.data, columns=["src"]).column(0).to_pylist()
    texts = distinct_rows(verses, args.rows + added + args.changed_rows)
    ids = [f"row{k:08d}" for k in range(args.rows + added)]
    day1 = write_files(corpus, ids[: args.rows], texts[: args.rows], 0, args.files, args.row_group_rows)
    overrides = [*memory_overrides(not args.no_memory, memory), *args.set]

    def spec(out: Path, overrides: list[str] = overrides) -> dict:
        return {"model": args.model, "input": str(corpus), "output": str(out), "chunk_rows": args.chunk_rows,
                "workers": args.workers, "device": args.device, "beam": args.beam,
                "max_tokens": args.max_tokens, "overrides": overrides}

    load = {"before": os.getloadavg()}
    with prefect_api(workdir / "prefect-home") as api:
        env = {**os.environ, "PREFECT_API_URL": api}
        print(f"day 1: translating {args.rows} rows ...", file=sys.stderr)
        first = measure(spec(output), env)
        new_files = max(1, round(args.files * args.added))
        day2 = {"added_rows": added, "rewritten": day1[len(day1) // 2], "changed_rows": args.changed_rows,
                "added_files": write_files(corpus, ids[args.rows:], texts[args.rows: args.rows + added],
                                           args.files, new_files, args.row_group_rows)}
        rewrite(corpus / day2["rewritten"], texts[args.rows + added:], args.row_group_rows)
        print(f"day 2: +{added} rows in new files, {day2['rewritten']} rewritten ...", file=sys.stderr)
        second = measure(spec(output), env)
        load["during_runs"] = os.getloadavg()
        print("day 2 from scratch ...", file=sys.stderr)
        # Truly from scratch: without the memory the incremental runs filled.
        from_scratch = measure(spec(scratch, [*memory_overrides(False, memory), *args.set]), env)
    load["after"] = os.getloadavg()
    equality = compare(output, scratch)
    ratio = round(second["wall_seconds"] / first["wall_seconds"], 4)
    result = {
        "benchmark": "incremental", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average_1_5_15": {k: [round(x, 2) for x in v] for k, v in load.items()}},
        "model": args.model, "memory": not args.no_memory, "overrides": overrides,
        "corpus": {"day1": {"rows": args.rows, "files": len(day1)}, "day2": day2,
                   "chunk_rows": args.chunk_rows, "row_group_rows": args.row_group_rows,
                   "workers": args.workers, "beam": args.beam},
        "wall_seconds": {"first": first["wall_seconds"], "incremental": second["wall_seconds"],
                         "from_scratch": from_scratch["wall_seconds"]},
        "incremental_over_first": ratio, "target_ratio": 0.15, "within_target": ratio <= 0.15,
        "equal_to_from_scratch": equality,
        "runs": {"first": first, "incremental": second, "from_scratch": from_scratch},
        "workdir": str(workdir) if args.keep or args.workdir else None,
    }
    if not (args.keep or args.workdir):
        shutil.rmtree(workdir, ignore_errors=True)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
