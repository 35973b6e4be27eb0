"""prefect.yaml against a real Prefect server, with the README's commands: server, work pool,
``prefect deploy --all``, a process worker, then a retrain run and a translation run of the tiny model.

About a minute and a half on 2 cores. Every process started here runs in its own process group and
is stopped, whatever happens; the test skips if the server does not come up.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from tasks.events import MODEL_PROMOTED, model_resource
from tests.flows.conftest import ROOT, tiny_config

PREFECT = str(Path(sys.executable).with_name("prefect"))
SERVER_START_SECONDS = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a process and its children: SIGINT (a worker ends its flow runs), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def api_is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def server(tmp_path) -> Iterator[dict]:
    """A real `prefect server start` on loopback with a throw-away home; yields the environment to use."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(tmp_path / log, "wb") as out:
            process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        processes.append(process)
        return process

    try:
        process = start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                        "server.log")
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not api_is_up(env["PREFECT_API_URL"]):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (tmp_path / "server.log").read_text(errors="replace")[-2000:]
                pytest.skip(f"prefect server did not start within {SERVER_START_SECONDS} s:\n{log}")
            time.sleep(0.5)
        yield {"env": env, "start": start, "logs": tmp_path}
    finally:
        for process in reversed(processes):  # the worker (and its flow runs) first, then the server
            stop(process)


def prefect(server: dict, *args: str, timeout: float = 120) -> str:
    result = subprocess.run([PREFECT, *args], cwd=ROOT, env=server["env"], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def api(server: dict, path: str, body: dict) -> dict | list:
    """POST ``body`` to the server's REST API."""
    request = urllib.request.Request(f"{server['env']['PREFECT_API_URL']}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def promotion_events(server: dict) -> list[dict]:
    """The ``s2s.model.promoted`` events the server has stored (they arrive asynchronously)."""
    for _ in range(40):
        events = api(server, "/events/filter", {"filter": {"event": {"name": [MODEL_PROMOTED]}}, "limit": 10})
        if events["events"]:
            return events["events"]
        time.sleep(0.5)
    return []


def run_deployment(server: dict, name: str, parameters: dict, timeout: int = 300) -> str:
    """Run a deployment with `prefect deployment run --watch`; returns its output once it completed."""
    out = prefect(server, "deployment", "run", name, "--params", json.dumps(parameters), "--watch",
                  "--watch-interval", "2", "--watch-timeout", str(timeout), timeout=timeout + 30)
    assert "Flow run finished successfully in 'Completed'" in out, out[-3000:]
    return out


def deployments_for(tmp_path: Path, corpus: Path) -> Path:
    """The repository's prefect.yaml with its translation settings pointed at throw-away paths.

    Everything else (deployments, schedules, the trigger) is the file users deploy. The translation
    settings are one YAML anchor, so changing it changes every deployment that uses it.
    """
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    spec["definitions"]["translate_config"].update(
        model=str(tmp_path / "store/models/bible-es-en"), input=str(corpus),
        output=str(tmp_path / "translations"), decode={"beam_size": 2, "max_len_extra": 5})
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def flow_runs(server: dict, deployment: str) -> list[dict]:
    """The flow runs of a deployment (by name), newest first."""
    (found,) = [d for d in api(server, "/deployments/filter", {}) if d["name"] == deployment]
    return api(server, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [found["id"]]}},
                                             "sort": "EXPECTED_START_TIME_DESC"})


def wait_for_completed_run(server: dict, deployment: str, timeout: float = 300) -> dict:
    """The first flow run of ``deployment`` once it is Completed (fails fast if it fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs(server, deployment)
        if runs and runs[0]["state_type"] in ("FAILED", "CRASHED", "CANCELLED"):
            raise AssertionError(f"{deployment} run ended {runs[0]['state_type']}")
        if runs and runs[0]["state_type"] == "COMPLETED":
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no completed run of {deployment} within {timeout:.0f} s")


def test_retrain_and_translate_deployments_run_on_a_real_server(server, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    store = tmp_path / "store"
    corpus = tmp_path / "corpus.parquet"
    pl.read_csv(ROOT / "examples/tiny/pairs.tsv", separator="\t", quote_char=None).head(40) \
        .select("id", "src").write_parquet(corpus)
    prefect(server, "work-pool", "create", "s2s", "--type", "process")
    deployed = prefect(server, "--no-prompt", "deploy", "--all", "--prefect-file",
                       str(deployments_for(tmp_path, corpus)))
    assert all(name in deployed for name in ("retrain-weekly", "translate-nightly", "translate-on-promotion"))
    # The trigger became an automation that runs translate-on-promotion on the promotion event.
    (automation,) = api(server, "/automations/filter", {})
    assert automation["trigger"]["expect"] == [MODEL_PROMOTED]
    assert automation["trigger"]["match"] == {"prefect.resource.id": "s2s.model.bible-es-en"}
    assert [a["type"] for a in automation["actions"]] == ["run-deployment"]
    assert not flow_runs(server, "translate-on-promotion")
    server["start"]([PREFECT, "worker", "start", "--pool", "s2s"], "worker.log")

    # The tiny config under the Bible model's name; quality gate off so the first model is promoted.
    config = tiny_config(str(store), ["name=bible-es-en", "promotion.min_bleu=0", "promotion.min_chrf=0",
                                      "promotion.n_bootstrap=50"])
    run_deployment(server, "s2s-retrain/retrain-weekly", {"config": config.model_dump(mode="json")})
    current = json.loads((store / "models/bible-es-en/current").read_text())
    assert current["decision"] == "promoted" and Path(current["model"], "config.json").exists()
    (event,) = promotion_events(server)
    assert event["resource"]["prefect.resource.id"] == model_resource("bible-es-en")["prefect.resource.id"]
    assert event["payload"]["version"] == current["version"]

    # The promotion alone starts translate-on-promotion, with the model that was just promoted.
    wait_for_completed_run(server, "translate-on-promotion")
    manifest = json.loads((tmp_path / "translations" / current["version"] / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == 40
    assert manifest["model"]["version"] == current["version"]

    # A deployment run with overridden fields (as the README shows), its chunks on a Dask cluster.
    # Dask workers inherit this environment: that is how their task runs reach the server.
    monkeypatch.setenv("PREFECT_API_URL", server["env"]["PREFECT_API_URL"])
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            (dask_worker,) = client.run(os.getpid).values()
        run_deployment(server, "s2s-translate/translate-nightly", {"overrides": [
            f"output={tmp_path / 'nightly'}", "chunk_rows=10", f"dask_address={cluster.scheduler_address}"]})
    nightly = json.loads((tmp_path / "nightly" / current["version"] / "manifest.json").read_text())
    assert nightly["rows_out"] == 40 and nightly["chunks"]["count"] == 4
    assert list(nightly["this_run"]["workers"]) == [str(dask_worker)]  # every chunk ran on the Dask worker
