"""Benchmark the orchestration cost of corpus translation as the chunk count grows: the same corpus
cut into 10, 1,000 and 10,000 chunks, on the thread pool and on a Dask ``LocalCluster``, against a
real ``prefect server`` (SQLite, with its services, as an operator runs it).

Per run: wall time of ``s2s translate`` (the command, in a fresh process) split into its phases (the
fixed start and end, the chunk loop, verification), and within the chunk loop the chunks' own work
(the markers' ``seconds.total``), their commits, and what is left: orchestration (task runs, their
states and events, submission, the progress feed); Prefect task runs created, peak RSS of the
command's process, the server's CPU seconds and its database growth. The tiny model keeps the
model's share small, so orchestration shows.

    python bench/fanout.py --model <tiny package> --rows 200000 --chunks 10 1000 10000 \\
        --runners threads dask --out bench/results/fanout-cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from common import emit, load_average, peak_rss_mb, prefect_server

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bible-es-en" / "test.parquet"

ROOT = Path(__file__).resolve().parents[1]


def build_corpus(base: Path, rows: int, chunks: int, directory: Path) -> tuple[Path, int]:
    """``rows`` rows in up to 100 files whose row groups are one chunk each. Ids and texts are unique
    (a verse's first three words and the row number): identical texts are translated once per chunk,
    so repeats would make a chunk's work depend on its size, and the comparison across chunk counts
    would measure that instead of orchestration."""
    chunk_rows = max(1, rows // chunks)
    files = min(chunks, 100)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "_ready").exists():
        return directory, chunk_rows
    source = pq.read_table(base, columns=["id", "src"])
    per_file = rows // files
    for f in range(files):
        start = f * per_file
        take = [(start + i) % source.num_rows for i in range(per_file)]
        verses = source.column("src").take(pa.array(take)).to_pylist()
        table = pa.table({"id": [f"{start + i}" for i in range(per_file)],
                          "src": [" ".join(v.split()[:3] + [str(start + i)]) for i, v in enumerate(verses)]})
        pq.write_table(table, directory / f"part-{f:05d}.parquet", row_group_size=chunk_rows)
    (directory / "_ready").write_text("")
    return directory, chunk_rows


def child(spec: dict) -> dict:
    """One ``s2s translate`` in this fresh process; its figures from its summary, the manifest and the
    chunk index.

    Phases: ``chunks_phase`` is the flow's chunk loop (this run's ``wall_seconds``: from the plan to
    the last chunk's commit), ``verify`` the verification, and ``fixed`` the rest (imports, the
    temporary server, planning, exit). Inside the chunk loop, per chunk: its own work (read →
    translate → write its part), its commit (the marker's exclusive create with its fsyncs), and what
    is left, which is orchestration: task runs and their states and events, the feed, progress.
    """
    from flows.cli import main

    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = main(spec["argv"])
    wall = time.perf_counter() - started
    summary = json.loads(printed.getvalue()[printed.getvalue().index("{"):])
    run = summary["this_run"]
    output = Path(spec["output"])
    manifest = json.loads((output / "manifest.json").read_text())
    index = pq.read_table(output / "_chunks.parquet", columns=["seconds"]).column(0).to_pylist()
    chunks = manifest["chunks"]["count"]
    slots = spec["slots"]
    inside = sum(s["total"] for s in index) / slots
    commits = run["commit_seconds"] / slots
    loop = run["wall_seconds"]
    orchestration = loop - inside - commits
    outside = wall - inside
    return {"exit_code": code, "chunks": chunks, "rows": manifest["rows_out"],
            "wall_seconds": round(wall, 2),
            "phases_seconds": {"fixed": round(wall - loop - summary["verify_seconds"], 2),
                               "chunks_phase": round(loop, 2), "verify": summary["verify_seconds"]},
            "inside_chunks_seconds": round(inside, 2), "commit_seconds": round(commits, 2),
            "orchestration_seconds": round(orchestration, 2),
            "orchestration_share": round(orchestration / wall, 4),
            "orchestration_ms_per_chunk": round(1000 * orchestration / chunks, 3),
            "commit_ms_per_chunk": round(1000 * commits / chunks, 3),
            "verify_ms_per_chunk": round(1000 * summary["verify_seconds"] / chunks, 3),
            "outside_chunks_seconds": round(outside, 2), "outside_share": round(outside / wall, 4),
            "outside_ms_per_chunk": round(1000 * outside / chunks, 2), "peak_rss_mb": peak_rss_mb()}


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of the server and its children (uvicorn workers, services)."""
    total = sum(process.cpu_times()[:2])
    for kid in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(kid.cpu_times()[:2])
    return total


def count_task_runs() -> int:
    """Task runs the server holds (the API answers from its database)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request("POST", "/task_runs/count", json={})
        return int(response.json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=False)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--runners", nargs="+", default=["threads", "dask"], choices=["threads", "dask"])
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    parser.add_argument("--dask-profiler", choices=["on", "off"], default="on",
                        help="the Dask workers' statistical profiler (distributed.worker.profile.enabled; "
                             "on by default in Dask: it samples every thread's stack every 10 ms)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.model:
        parser.error("--model is required")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2s-fanout-"))
    load_before = load_average()
    runs = []
    home = workdir / "prefect-home"
    with prefect_server(home, services=True) as (api, pid):
        if pid is None:
            parser.error("unset PREFECT_API_URL: the benchmark measures a server it starts itself")
        server = psutil.Process(pid)
        env = {**os.environ, "PREFECT_API_URL": api}
        os.environ["PREFECT_API_URL"] = api
        cluster = None
        for runner in args.runners:
            if runner == "dask":
                import dask.config
                from distributed import LocalCluster

                dask.config.set({"distributed.worker.profile.enabled": args.dask_profiler == "on"})
                cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            for chunks in args.chunks:
                corpus, chunk_rows = build_corpus(args.data, args.rows, chunks, workdir / f"corpus-{chunks}")
                output = workdir / f"out-{runner}-{chunks}-{time.strftime('%H%M%S')}"
                argv = ["translate", "--model", args.model, "--input", str(corpus), "--output", str(output),
                        "--chunk-rows", str(chunk_rows), "--beam", "1", "--no-memory", "--device", "cpu",
                        "-q"]
                argv += ["--dask", cluster.scheduler_address] if runner == "dask" else ["--workers", "1"]
                spec = {"argv": argv, "output": str(output), "slots": 1}
                db = home / "prefect.db"
                db_before = db.stat().st_size if db.exists() else 0
                cpu_before = _cpu_seconds(server)
                task_runs_before = count_task_runs()
                print(f"{runner}: {chunks} chunks of {chunk_rows} rows ...", file=sys.stderr)
                try:
                    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT,
                                          env=env, capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    committed = len(list((output / "_done").glob("*.json")))
                    runs.append({"runner": runner, "chunks_planned": chunks, "chunks_committed": committed,
                                 "timed_out_after_s": args.timeout})
                    print(json.dumps(runs[-1]), file=sys.stderr)
                    continue
                if done.returncode:
                    raise RuntimeError(f"{runner} {chunks} chunks failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                time.sleep(2)  # let the server's recorder catch up before reading its figures
                result.update({
                    "runner": runner, "chunk_rows": chunk_rows,
                    "task_runs": count_task_runs() - task_runs_before,
                    "server_cpu_seconds": round(_cpu_seconds(server) - cpu_before, 2),
                    "server_db_growth_mb": round(((db.stat().st_size if db.exists() else 0) - db_before)
                                                 / 2**20, 2),
                    "stderr_has_traceback": "Traceback" in done.stderr})
                runs.append(result)
                print(json.dumps(result), file=sys.stderr)
            if cluster is not None:
                cluster.close()
                cluster = None
    emit({"benchmark": "fanout", "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(),
          "load_average_before": load_before, "load_average_after": load_average(), "model": args.model,
          "rows": args.rows, "dask_profiler": args.dask_profiler, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
