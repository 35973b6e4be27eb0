"""Evaluate a model package on a test set and write a report.

    python -m flows.evaluate --model URL --test URL [--report URL]
"""

from __future__ import annotations

import sys

from prefect import flow

from tasks.config import EvaluateSection
from tasks.evaluate import evaluate_model
from tasks.secrets import StorageOptions

DEFAULT_SETTINGS = EvaluateSection()


@flow(name="s2s-evaluate", log_prints=True)
def evaluate_flow(model_url: str, test_url: str, report_url: str,
                  settings: EvaluateSection = DEFAULT_SETTINGS, src_column: str = "src",
                  ref_column: str = "tgt", storage_options: StorageOptions | None = None) -> dict:
    """Translate ``test_url`` with the package at ``model_url`` and write a report under ``report_url``."""
    name = test_url.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "test"
    return evaluate_model(model_url, {name: test_url}, report_url, settings, storage_options, src_column,
                          ref_column)


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
