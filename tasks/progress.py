"""Progress of a long job: a live bar with rate and ETA when stderr is a terminal, log lines otherwise.

Used for training, evaluation decoding, corpus and text translation. Imports neither Prefect nor
torch, so the plain-text path of the CLI can use it too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Logger = logging.Logger | logging.LoggerAdapter


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class _Count(ProgressColumn):
    """``done/total unit`` (or ``done unit`` without a total) and the rate."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if unit == "%":  # the percentage column says it all
            return Text("")
        total = f"/{task.total:,.0f}" if task.total is not None else ""
        rate = f", {task.speed:,.1f} {unit}/s" if task.speed else ""
        return Text(f"{task.completed:,.0f}{total} {unit}{rate}", style="progress.download")


class ProgressBar:
    """Reports ``update(done)`` calls: a rich bar on a terminal, else a log line every ``every`` s.

    ``every=None`` logs nothing (for jobs that log progress lines of their own). ``live`` forces or
    suppresses the bar (default: a bar when stderr is a terminal).
    """

    def __init__(self, description: str, total: float | None, unit: str, logger: Logger,
                 every: float | None = 30.0, live: bool | None = None):
        self.description, self.total, self.unit = description, total, unit
        self.logger, self.every = logger, every
        self.done = 0.0
        self.started = self.logged = time.monotonic()
        self.progress: Progress | None = None
        self._redirected: list[tuple[Any, str, Any]] = []
        if stderr_is_terminal() if live is None else live:
            self._start_bar()

    def _start_bar(self) -> None:
        console = Console(file=sys.stderr)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 _Count(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=console, redirect_stderr=True, redirect_stdout=False)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=self.total, unit=self.unit)
        self._route_log_handlers_through(console)

    def _route_log_handlers_through(self, console: Console) -> None:
        """Log handlers that write to stderr (Prefect's console handler among them) hold the stream
        they were made with, so their lines would tear the bar: point them at rich's stderr proxy,
        which prints each line above the bar, until the bar closes."""
        proxy, original = sys.stderr, console.file
        loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                          if isinstance(v, logging.Logger))]
        for logger in loggers:
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is original:
                    self._redirected.append((handler, "stream", handler.stream))
                    handler.stream = proxy
                rich_console = getattr(handler, "console", None)
                if isinstance(rich_console, Console) and rich_console.file is original:
                    self._redirected.append((rich_console, "file", original))
                    rich_console.file = proxy

    def update(self, done: float, description: str | None = None, total: float | None = None) -> None:
        """Set the amount done (and optionally a new description or total)."""
        self.done = done
        if description is not None:
            self.description = description
        if total is not None:
            self.total = total
        if self.progress is not None:
            self.progress.update(self.task, completed=done, description=self.description, total=self.total)
        elif self.every is not None and time.monotonic() - self.logged >= self.every:
            self.log_line()

    def advance(self, amount: float) -> None:
        self.update(self.done + amount)

    def log_line(self) -> None:
        self.logged = now = time.monotonic()
        rate = self.done / (now - self.started) if now > self.started else 0.0
        if self.total:
            eta = f", eta {format_seconds((self.total - self.done) / rate)}" if rate else ""
            self.logger.info("%s: %s/%s %s (%.1f%%), %.1f %s/s%s", self.description, f"{self.done:,.0f}",
                             f"{self.total:,.0f}", self.unit, 100 * self.done / self.total, rate, self.unit,
                             eta)
        else:
            self.logger.info("%s: %s %s, %.1f %s/s", self.description, f"{self.done:,.0f}", self.unit, rate,
                             self.unit)

    def close(self) -> None:
        """Stop the bar (leaving its last state on screen) and give the log handlers their stream back."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            for owner, attribute, value in reversed(self._redirected):
                setattr(owner, attribute, value)
            self._redirected.clear()


@contextmanager
def progress_bar(description: str, total: float | None, unit: str, logger: Logger,
                 every: float | None = 30.0, live: bool | None = None) -> Iterator[ProgressBar]:
    bar = ProgressBar(description, total, unit, logger, every, live)
    try:
        yield bar
    finally:
        bar.close()


def format_seconds(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
