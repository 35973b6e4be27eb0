"""The core library's log lines reach the Prefect run's log (the UI), not only the console."""

from __future__ import annotations

import logging

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker
from prefect.runtime import flow_run
from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS


@flow
def warns() -> str:
    # What the Translator logs when a sentence cannot be translated.
    logging.getLogger("s2s_core.inference.translator").warning("sentence of 812 tokens ran out of memory")
    return flow_run.id


def test_core_warnings_reach_the_flow_runs_log(prefect_harness):
    assert "s2s_core" in PREFECT_LOGGING_EXTRA_LOGGERS.value(), "prefect.toml unread: run pytest in the repo"
    run_id = warns()
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert any("812 tokens ran out of memory" in log.message and log.name.startswith("s2s_core")
               for log in logs)
