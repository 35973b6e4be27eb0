"""Evaluate a model package on a test set and write a report.

    python -m flows.evaluate --model URL --test URL [--report URL]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow

from tasks.config import EvaluateSection
from tasks.evaluate import evaluate_model

DEFAULT_SETTINGS = EvaluateSection()


@flow(name="s2s-evaluate", log_prints=True)
def evaluate_flow(model: str, test: str, report: str, settings: EvaluateSection = DEFAULT_SETTINGS,
                  src_column: str = "src", ref_column: str = "tgt",
                  storage_options: dict[str, Any] | None = None) -> dict:
    """Translate ``test`` with the package at ``model`` and write a report under ``report``."""
    name = test.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "test"
    return evaluate_model(model, {name: test}, report, settings, storage_options, src_column, ref_column)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
