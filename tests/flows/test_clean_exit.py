"""Issue 21: ``s2s translate`` of thousands of chunks exits cleanly, whatever the chunk count.

Against the temporary Prefect server (no ``PREFECT_API_URL``), the server records task runs behind
the run; stopped at exit while still behind, it printed ``Error flushing 1 events`` and a
``CancelledError`` traceback on stderr (flows/_exit.py waits for it instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.flows.conftest import ROOT

CHUNKS = 2000
WORDS = ["hola", "casa", "perro", "el", "la", "dios", "tierra", "agua", "luz", "dia"]


@pytest.mark.slow
def test_thousands_of_chunks_exit_without_a_traceback(tiny_run, tmp_path):
    _, result = tiny_run
    corpus = tmp_path / "corpus.parquet"
    texts = [f"{WORDS[i % len(WORDS)]} {WORDS[i // len(WORDS) % len(WORDS)]}" for i in range(CHUNKS)]
    pq.write_table(pa.table({"id": pa.array(range(CHUNKS), pa.int64()), "src": texts}), corpus,
                   row_group_size=1)
    # The command's own temporary server, as a user gets it (the harness's API is this process's).
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    # Four threads on few cores: chunks finish faster than the server records them, as on a big machine.
    process = subprocess.run(
        [sys.executable, "-m", "flows.cli", "translate", "--model", result["model"], "--input", str(corpus),
         "--output", str(tmp_path / "out"), "--chunk-rows", "1", "--beam", "1", "--no-memory",
         "--workers", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stderr[-5000:]
    summary = json.loads(process.stdout)
    assert summary["rows_in"] == summary["rows_out"] == CHUNKS and summary["failed_rows"] == 0
    assert summary["this_run"]["chunks_translated"] == CHUNKS
    tail = process.stderr[-5000:]
    assert "Traceback" not in process.stderr, tail
    assert "CancelledError" not in process.stderr, tail
    assert "Stopping temporary server" in process.stderr  # it did run against the temporary server
