"""What every task shares: the retry policy for storage I/O, the run logger and artifact keys."""

from __future__ import annotations

import logging

from prefect import Task, get_run_logger
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import MissingContextError
from prefect.states import State

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


# The retry settings of every task that reads or writes storage: `@task(name=..., **IO_RETRIES)`.
IO_RETRIES: dict = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_transient_io}


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
