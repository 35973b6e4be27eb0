"""A clean exit from the temporary Prefect server: let it record every task run before it stops.

Without ``PREFECT_API_URL`` a command runs its flow against a temporary server, a subprocess that
Prefect stops at interpreter exit (``SubprocessASGIServer.stop``, an ``atexit`` hook: SIGTERM, then
SIGKILL after 5 s). Task run states reach that server as events, and its task run recorder writes them
to the database one by one, behind the run: after thousands of short chunks it can be hundreds of task
runs behind when the flow returns. Stopped then, the server cancels the recorder mid-write, which logs
``Error flushing 1 events`` with a ``CancelledError`` traceback on the command's stderr (the server
shares it), and those task runs stay Running in the run history.

So, before returning, the command waits until the server has recorded a final state for each task run
of its flow runs: ``note_task_runs()`` (in the flow, at each task call or submission) counts them, and
``settled_temporary_server()`` (around the flow call) waits for them. (Prefect 3 creates task runs
from the client's events, so the client alone knows how many there are; counting the server's task
runs that are not yet final is no use: those still queued in the recorder are not counted at all.)
A real server keeps running and catches up by itself: nothing is waited for then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL

# Flow run id -> how many task runs it started (flow runs against the temporary server only).
_STARTED: dict[UUID, int] = {}
_TERMINAL = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
STALL_SECONDS = 30.0  # give up waiting once the recorded count has not grown for this long
POLL_SECONDS = 0.2

logger = logging.getLogger("s2s.flows")


def temporary_server() -> bool:
    """Whether runs in this process go to Prefect's temporary server (no ``PREFECT_API_URL``)."""
    return not PREFECT_API_URL.value()


def note_task_runs(count: int = 1) -> None:
    """Inside a flow run against the temporary server: count the task runs it starts (one per task
    call or submission; a retry is the same task run), for ``settled_temporary_server`` to wait for."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not temporary_server():
        return
    _STARTED[context.flow_run.id] = _STARTED.get(context.flow_run.id, 0) + count


@contextmanager
def settled_temporary_server() -> Iterator[None]:
    """Around a flow call: on its way out (returned or failed), wait until the temporary server has
    recorded every task run of the flow runs that ended inside, so that stopping it at exit interrupts
    nothing. A failure's own traceback follows as before; Ctrl-C does not wait."""
    before = set(_STARTED)
    try:
        yield
    except Exception:
        _settle([run for run in list(_STARTED) if run not in before])
        raise
    _settle([run for run in list(_STARTED) if run not in before])


def _settle(flow_runs: list[UUID]) -> None:
    expected = {run: _STARTED.pop(run) for run in flow_runs}
    if not expected or not temporary_server():
        return
    try:
        _wait_for_task_runs(expected)
    except Exception as err:  # noqa: BLE001 - the run's own result stands; only its history may lag
        logger.warning("could not check that the temporary Prefect server recorded every task run: %s", err)


def _wait_for_task_runs(expected: dict[UUID, int]) -> None:
    from prefect.client.orchestration import get_client

    total = sum(expected.values())
    body = {"flow_runs": {"id": {"any_": [str(run) for run in expected]}},
            "task_runs": {"state": {"type": {"any_": _TERMINAL}}}}
    with get_client(sync_client=True) as client:
        started = progressed = time.monotonic()
        last, said = -1, False
        while True:
            response = client.request("POST", "/task_runs/count", json=body)
            response.raise_for_status()
            recorded = int(response.json())
            if recorded >= total:
                return
            now = time.monotonic()
            if recorded > last:
                last, progressed = recorded, now
            elif now - progressed > STALL_SECONDS:
                logger.warning("the temporary Prefect server recorded %d of %d task runs and made no "
                               "progress for %.0f s: stopping it anyway", recorded, total, STALL_SECONDS)
                return
            if not said and now - started > 1:
                logger.info("waiting for the temporary Prefect server to record %d task runs (%d so far)",
                            total, recorded)
                said = True
            time.sleep(POLL_SECONDS)
