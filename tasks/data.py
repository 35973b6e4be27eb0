"""prepare: read parallel data, clean and filter it (with counts), split, write the run's splits."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import polars as pl
from prefect import task

from s2s_core import storage
from s2s_core.text.prepare import (
    FILTER_RULES,
    PrepareConfig,
    clean_parallel,
    read_parallel,
    split_parallel,
    write_parquet,
)
from tasks.common import IO_RETRIES, run_logger
from tasks.config import PipelineConfig
from tasks.layout import RunLayout


@task(name="prepare", **IO_RETRIES)
def prepare_data(config: PipelineConfig, layout: RunLayout) -> dict:
    """Writes ``data/{train,dev,test-*}.parquet`` and ``prepare_report.json``; returns their URLs."""
    logger = run_logger()
    data, opts, prep = config.data, config.storage_options, config.data.prepare
    corpus = read_parallel(data.train, prep, opts, tgt_url=data.train_tgt)
    cleaned, report = clean_parallel(corpus, prep)
    logger.info("read %d pairs from %s; removed %s; kept %d", report["input_rows"], data.train,
                ", ".join(f"{report[r]} {r}" for r in FILTER_RULES), report["output_rows"])
    # Only what is not given separately is split off the training data.
    splits = split_parallel(cleaned, replace(
        prep, dev_size=0 if data.dev else prep.dev_size, test_size=0 if data.test else prep.test_size))
    if data.dev:
        splits["dev"], report["dev_filter"] = clean_parallel(read_parallel(data.dev, prep, opts), prep)
    tests = {"test": splits["test"]} if not data.test else {
        name: _test_set(url, prep, opts) for name, url in data.test.items()}
    if splits["train"].height == 0:
        raise ValueError(f"no training pairs left after filtering {data.train}: {report}")

    urls = {"train": layout.split("train"), "dev": layout.split("dev"), "test": {}}
    write_parquet(splits["train"], urls["train"], opts)
    write_parquet(splits["dev"], urls["dev"], opts)
    for name, frame in tests.items():
        urls["test"][name] = layout.split(name if name == "test" else f"test-{name}")
        write_parquet(frame, urls["test"][name], opts)
    report["splits"] = {"train": splits["train"].height, "dev": splits["dev"].height,
                        **{f"test:{n}": f.height for n, f in tests.items()}}
    storage.write_text(layout.prepare_report, json.dumps(report, indent=2), **opts)
    logger.info("splits: %s", report["splits"])
    return {**urls, "report": report}


def _test_set(url: str, prep: PrepareConfig, opts: dict[str, Any]) -> pl.DataFrame:
    """A given test set is evaluated in full: no filtering, nulls become empty strings."""
    frame = read_parallel(url, prep, opts)
    return frame.with_columns(pl.col("src").fill_null(""), pl.col("tgt").fill_null(""))
