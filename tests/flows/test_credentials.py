"""Credentials given as storage options land nowhere: not in the store, the logs or Prefect's database.

Training, evaluation, corpus and text translation (through the command line, as a user runs them) and a
retrain with overrides (as a deployment runs it) all work on the loopback S3 server with the key and
secret given as storage options only; then every object in the bucket, every captured log record and
output line, the flow runs, task runs, logs and artifacts the Prefect API holds and every file of the
Prefect database and home are searched for them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import s3fs
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME

from flows.cli import main
from tasks.secrets import MASK
from tests.flows.conftest import FAST, ROOT, TINY, tiny_config
from tests.flows.test_retrain_flow import RETRAIN

BUCKET = "s2s-credentials"
# What is searched matters here, not what is learnt: as few steps and decodes as the flows allow.
QUICK = [*FAST, "train.max_steps=8", "train.eval_every=0", "train.checkpoint_every=8", "evaluate.heatmaps=0",
         "evaluate.n_bootstrap=0"]


class Records(logging.Handler):
    """Every log record, formatted with its traceback: what any log handler could write."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    # Prefect's own loggers do not propagate to the root.
    loggers = [logging.getLogger(name) for name in ("", "prefect", "s2s", "s2s_core")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def bucket_hits(fs: s3fs.S3FileSystem, needles: list[str]) -> list[str]:
    fs.invalidate_cache()
    paths = fs.find(BUCKET)
    assert len(paths) > 50, "the runs wrote their store"
    contents = fs.cat(paths)
    return [path for path, data in contents.items() if any(n.encode() in data for n in needles)]


def prefect_records() -> list[tuple[str, str]]:
    """What the Prefect API holds, as JSON: flow runs (with their parameters), task runs, logs, artifacts."""
    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
    records: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        for what, read in (("flow run", client.read_flow_runs), ("task run", client.read_task_runs),
                           ("log", client.read_logs), ("artifact", client.read_artifacts)):
            offset = 0
            while page := read(limit=200, offset=offset):
                records += [(what, item.model_dump_json()) for item in page]
                offset += len(page)
    return records


def prefect_hits(needles: list[str]) -> list[str]:
    return [f"{what}: {text[:200]}" for what, text in prefect_records() if any(n in text for n in needles)]


def prefect_files_hits(needles: list[str]) -> list[str]:
    """Files of the Prefect database (with its WAL) and home (results, caches) holding a needle."""
    database = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[1]).parent
    hits = []
    for root in {database, Path(PREFECT_HOME.value())}:
        for path in root.rglob("*"):
            if path.is_file() and any(n.encode() in path.read_bytes() for n in needles):
                hits.append(str(path))
    return hits


@flow
def logs_a_canary(canary: str) -> None:
    get_run_logger().info("canary %s", canary)


def run_cli(capsys: pytest.CaptureFixture[str], output: list[str], *argv: str) -> dict[str, Any]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    output += [out, err]
    assert code == 0, err
    return json.loads(out)


def test_credentials_given_as_storage_options_land_nowhere(prefect_harness, s3_server, tmp_path, capsys,
                                                           records):
    key, secret = f"AKIA{uuid.uuid4().hex[:16].upper()}", uuid.uuid4().hex
    endpoint = s3_server["endpoint_url"]
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=key, secret=secret)
    fs.mkdir(BUCKET)
    fs.put(str(ROOT / "examples/tiny/pairs.tsv"), f"{BUCKET}/corpus/pairs.tsv")
    verses = pl.read_csv(ROOT / "examples/tiny/pairs.tsv", separator="\t", quote_char=None).head(30)
    verses.select("id", "src").write_parquet(tmp_path / "verses.parquet")
    fs.put(str(tmp_path / "verses.parquet"), f"{BUCKET}/in/verses.parquet")
    (tmp_path / "lines.txt").write_text("\n".join(verses["src"].head(3)) + "\n", encoding="utf-8")
    fs.put(str(tmp_path / "lines.txt"), f"{BUCKET}/in/lines.txt")
    store = f"s3://{BUCKET}/store"
    credentials = [f"endpoint_url={endpoint}", f"key={key}", f"secret={secret}"]
    flags = [arg for option in credentials for arg in ("--storage-option", option)]
    output: list[str] = []

    trained = run_cli(capsys, output, "train", str(TINY), "--store", store,
                      *[arg for option in [*QUICK, f"data.train=s3://{BUCKET}/corpus/pairs.tsv",
                                           *(f"storage_options.{c}" for c in credentials)]
                        for arg in ("--set", option)])
    assert trained["model"].startswith(f"{store}/models/tiny/")
    run_cli(capsys, output, "evaluate", "--model", trained["model"], "--test",
            f"{trained['run']}/data/test.parquet", "--report", f"s3://{BUCKET}/reports/test", "--beam", "1",
            "--bootstrap", "0", *flags)
    translated = run_cli(capsys, output, "translate", "--model", trained["model"], "--input",
                         f"s3://{BUCKET}/in/verses.parquet", "--output", f"s3://{BUCKET}/out", "--beam", "1",
                         "--chunk-rows", "15", "--workers", "1", *flags)
    assert translated["rows_out"] == 30
    run_cli(capsys, output, "translate", "--model", trained["model"], "--input", f"s3://{BUCKET}/in/lines.txt",
            "--output", f"s3://{BUCKET}/text/lines.txt", "--beam", "1", *flags)
    # As a deployment runs it: the config object plus overrides (validated again inside the flow).
    from flows.retrain import retrain_flow

    config = tiny_config(store, [*QUICK, f"data.train=s3://{BUCKET}/corpus/pairs.tsv",
                                 *(f"storage_options.{c}" for c in credentials)])
    retrained = retrain_flow(config, overrides=[*RETRAIN, "train.max_steps=4"])
    assert retrained["decision"] in ("promoted", "rejected")

    needles = [secret, key]
    assert fs.exists(f"{trained['run']}/config.yaml".removeprefix("s3://"))
    assert bucket_hits(fs, needles) == []
    assert [line for line in records.lines + output if any(n in line for n in needles)] == []
    # The searches do find what is there: a canary logged in a flow is in the API and the database.
    canary = uuid.uuid4().hex
    logs_a_canary(canary)
    assert prefect_hits([canary]) and prefect_files_hits([canary])
    assert prefect_hits(needles) == []
    # Prefect stored the parameters of the runs with the mask in place of the credentials.
    masked = f'"key":"{MASK}","secret":"{MASK}"'
    flows = {json.loads(text)["flow_id"] for what, text in prefect_records()
             if what == "flow run" and masked in text}
    assert len(flows) == 4  # s2s-train, s2s-evaluate, s2s-translate, s2s-retrain
    assert prefect_files_hits(needles) == []
