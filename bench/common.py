"""Shared by the benchmarks: peak memory, load average and JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` survives ``exec``, so a child started by a
    large parent would report the parent's peak (seen: 1.6 GB for a 160 MB child).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages, rounded: recorded beside every figure."""
    return [round(x, 2) for x in os.getloadavg()]


def emit(result: dict, out: Path | None) -> dict:
    """Print the result as JSON and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return result


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every translation benchmark takes: how a run translates, where results go."""
    parser.add_argument("--chunk-rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="one keeps the outside-model share exact")
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", type=Path, help="keep corpora and outputs here (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measured run, in a fresh process


def run_child(args: argparse.Namespace, run: Callable[[dict], dict]) -> dict | None:
    """With ``--child SPEC``: run that one measurement, print its JSON and return it; else None."""
    if not args.child:
        return None
    result = run(json.loads(args.child))
    print(json.dumps(result))
    return result


@contextlib.contextmanager
def prefect_server(home: Path, services: bool = False) -> Iterator[tuple[str, int | None]]:
    """``(api_url, server pid)``: PREFECT_API_URL if set (pid None), else a loopback ``prefect server``
    with its SQLite database under ``home``, started for the benchmark (``services``: the scheduler,
    task run recorder and the rest, as an operator runs it)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"], None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # The interpreter's own prefect: the venv's bin directory need not be on PATH.
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-ui", *([] if services else ["--no-services"])]
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")  # noqa: SIM115 - open for the server's whole life
    server = None
    try:
        # A fresh SQLite database with services starting beside its migrations sometimes ends the
        # server at once with "database is locked": start it again, as an operator would.
        for _attempt in range(3):
            server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            deadline = time.monotonic() + 180
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            if server.poll() is None:
                break
        else:
            raise RuntimeError(f"the Prefect server did not start (log: {home / 'server.log'})")
        yield url, server.pid
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait()
        log.close()
