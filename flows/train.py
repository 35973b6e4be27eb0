"""Train-and-evaluate flow: prepare → tokenize → train → evaluate.

    python -m flows.train configs/tiny.yaml [--set train.max_steps=50] [--store s3://bucket/prefix]
"""

from __future__ import annotations

import sys

import yaml
from prefect import flow, get_run_logger

from s2s_core import storage
from tasks.config import PipelineConfig
from tasks.data import prepare_data
from tasks.evaluate import evaluate_model
from tasks.layout import RunLayout
from tasks.tokenize import tokenize
from tasks.train import train_model
from tasks.warm_start import inherit_tokenizer, resolve_warm_start


@flow(name="s2s-train", log_prints=True)
def train_flow(config: PipelineConfig) -> dict:
    """Train a model from parallel data and evaluate it; re-running the same config resumes."""
    layout = RunLayout(config.store, config.resolved_run_id)
    get_run_logger().info("run %s in %s", layout.run_id, layout.root)
    storage.write_text(layout.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                       **config.storage_options)
    warm_start = resolve_warm_start(config, layout)  # before the data work: a misfit fails at once
    data = prepare_data(config, layout)
    if warm_start:
        tokenizer = inherit_tokenizer(warm_start, layout.tokenizer, config.storage_options)
    else:
        tokenizer = tokenize(data["train"], config.tokenizer, layout.tokenizer, config.storage_options)
    trained = train_model(config, data, tokenizer["url"], layout, warm_start)
    evaluation = evaluate_model(trained["model"], data["test"], layout.reports, config.evaluate,
                                config.storage_options)
    return {"run": layout.root, "model": trained["model"], "report": evaluation["markdown"],
            "scores": evaluation["scores"], "training": trained, "prepare": data["report"],
            "tests": data["test"]}


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
