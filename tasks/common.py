"""What every task shares: the retry policy for storage I/O, the run logger and artifact keys."""

from __future__ import annotations

import logging
import os

from prefect import Task, get_run_logger
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import MissingContextError
from prefect.states import State
from prefect.tasks import exponential_backoff

# Transient storage errors (timeouts, connection resets, throttling) are worth a retry; a missing
# file, a bad column or a corrupt package is not: retrying would only delay the clear error.
PERMANENT_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, ValueError, KeyError, TypeError)


def retry_on_transient_io(task: Task, task_run: TaskRun, state: State) -> bool:
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception:  # noqa: BLE001 - anything else is a bug or bad input: fail at once
        return False
    return False


# First retry delay in seconds; later ones double (tests shorten it through the environment).
RETRY_BASE_SECONDS = float(os.environ.get("S2S_RETRY_BASE_SECONDS", "2"))

# The retry settings of every task that reads or writes storage: `@task(name=..., **IO_RETRIES)`.
# These come on top of s3fs's own retries (per request): they re-run a whole task once a store has
# been failing for longer than those ride out. Exponential backoff (2, 4, 8, 16 s) outlasts a
# throttling burst or a server restart; jitter (±50%) keeps a thousand chunk tasks that failed
# together from retrying in lockstep. Every task with these settings is safe to re-run: its writes
# are atomic, and commits and promotions are exclusive creates.
IO_RETRIES: dict = {"retries": 4, "retry_delay_seconds": exponential_backoff(RETRY_BASE_SECONDS),
                    "retry_jitter_factor": 0.5, "retry_condition_fn": retry_on_transient_io}


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow/task run; a plain logger when called as ``task.fn()``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("s2s.tasks")


def artifact_key(name: str, suffix: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only) for ``name`` + ``suffix``."""
    clean = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return f"{clean}-{suffix}"[:100]
