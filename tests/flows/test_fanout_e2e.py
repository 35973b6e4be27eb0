"""Issue 20: a run of thousands of tiny chunks against a real ``prefect server``: every row out, progress
per chunk, and a task run per batch of chunks, not per chunk."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from tests.flows.conftest import ROOT
from tests.test_deployments_e2e import api, server  # noqa: F401 - the real server fixture

CHUNKS = 3000
WORDS = ["hola", "casa", "perro", "el", "la", "dios", "tierra", "agua", "luz", "dia"]


def test_thousands_of_chunks_run_as_few_task_runs_on_a_real_server(server, tiny_run, tmp_path):  # noqa: F811
    _, trained = tiny_run
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in range(3):  # three files of 1,000 one-row row groups: 3,000 chunks of one row
        rows = range(f * 1000, (f + 1) * 1000)
        texts = [f"{WORDS[i % 10]} {WORDS[i // 10 % 10]}" for i in rows]
        pq.write_table(pa.table({"id": pa.array(rows, pa.int64()), "src": texts}), corpus / f"{f}.parquet",
                       row_group_size=1)
    process = subprocess.run(
        [sys.executable, "-m", "flows.cli", "translate", "--model", trained["model"], "--input", str(corpus),
         "--output", str(tmp_path / "out"), "--chunk-rows", "1", "--beam", "1", "--no-memory",
         "--workers", "2", "--device", "cpu"],
        cwd=ROOT, env=server["env"], capture_output=True, text=True, timeout=1200)
    assert process.returncode == 0, process.stderr[-5000:]
    summary = json.loads(process.stdout)
    assert summary["rows_in"] == summary["rows_out"] == CHUNKS and summary["failed_rows"] == 0
    assert summary["this_run"]["chunks_translated"] == CHUNKS
    assert "Traceback" not in process.stderr, process.stderr[-5000:]
    # Progress counts every chunk as it commits (a line every 2 s, not 3,000 lines), up to the last.
    progress = [line for line in process.stderr.splitlines() if f"/{CHUNKS}, rows " in line]
    assert 1 <= len(progress) < CHUNKS and f"chunks {CHUNKS}/{CHUNKS}, rows {CHUNKS}/{CHUNKS}" in progress[-1]
    counts = [int(line.split("chunks ")[1].split("/")[0]) for line in progress]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    # ... but the server holds a task run per batch (guided self-scheduling: ~4 × 2 × ln(3000 / 8)).
    (flow_run,) = api(server, "/flow_runs/filter", {"flows": {"name": {"any_": ["s2s-translate"]}}})
    task_runs = api(server, "/task_runs/filter",
                    {"flow_runs": {"id": {"any_": [flow_run["id"]]}}, "limit": 200})
    batches = [t for t in task_runs if t["name"].startswith("translate-")]
    assert 2 <= len(batches) <= 80 and len(task_runs) <= 90
    assert all(t["state_type"] == "COMPLETED" for t in task_runs)
