"""Retrain-and-evaluate: train a challenger, compare it with the serving champion, promote or reject.

    python -m flows.retrain configs/tiny.yaml [--set promotion.alpha=0.01] [--store s3://bucket/prefix]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.train import train_flow
from s2s_core import storage
from tasks.config import PipelineConfig, with_overrides
from tasks.evaluate import evaluate_model
from tasks.layout import RunLayout
from tasks.registry import (
    check_registry_store,
    compare_with_champion,
    decide_and_record,
    find_champion,
    find_decision,
    publish_comparison,
)


def challenger_config(config: PipelineConfig) -> PipelineConfig:
    """The config with a run id per scheduled date, unless one is given.

    A weekly job re-reads the same data URLs with the same config: the plain config-hash run id would
    resume last week's finished run instead of training on this week's data. Dating the run id by the
    flow run's scheduled start keeps a retried or re-run job resuming its own run.
    """
    if config.run_id:
        return config
    when = flow_run.scheduled_start_time or datetime.now(UTC)
    return config.model_copy(update={"run_id": f"{config.resolved_run_id}-{when:%Y%m%d}"})


@flow(name="s2s-retrain", log_prints=True)
def retrain_flow(config: PipelineConfig, overrides: list[str] | None = None) -> dict:
    """Train a challenger and promote it only if it beats the champion on the same test sets.

    ``overrides`` (``key=value``, as ``--set``) change fields of ``config``, so a deployment run can
    change one setting without restating the whole config.
    """
    config = challenger_config(with_overrides(config, overrides))
    layout, opts = RunLayout(config.store, config.resolved_run_id), config.storage_options
    version = config.resolved_version
    get_run_logger().info("retraining %s: challenger %s in %s", config.name, version, layout.root)
    registry = dict(store=config.store, name=config.name, version=version, run_id=layout.run_id,
                    settings=config.promotion, storage_options=opts)
    check_registry_store(config.store, config.name, opts)  # before hours of training, not after
    try:
        trained = train_flow(config)
    except Exception as err:
        # A failed challenger is recorded, never promoted: the champion keeps serving.
        decide_and_record(**registry, champion=find_champion(config.store, config.name, opts), scores={},
                          comparison=None, failure=f"training failed: {type(err).__name__}: {err}")
        raise

    # A re-run after a crash that followed this run's decision reports that decision again.
    decision = find_decision(config.store, config.name, layout.run_id, opts)
    if decision is None:
        # Read the champion as late as possible: it is the base of the compare-and-swap below.
        champion = find_champion(config.store, config.name, opts)
        comparison = champion_scores = None
        if champion and champion["version"] != version:
            champion_reports = storage.join(layout.reports, "champion")
            settings = config.evaluate.model_copy(update={"heatmaps": 0})  # scores only
            champion_scores = evaluate_model(champion["model"], trained["tests"], champion_reports, settings,
                                             opts)["scores"]
            comparison = compare_with_champion(layout.reports, champion_reports, list(trained["tests"]),
                                               config.promotion.n_bootstrap, opts)
        scores = {test: {m: s[m] for m in ("bleu", "chrf")} for test, s in trained["scores"].items()}
        decision = decide_and_record(**registry, champion=champion, scores=scores, comparison=comparison,
                                     champion_scores=champion_scores)
    champion = decision["details"].get("champion")
    report = {"name": config.name, "run_id": layout.run_id, "decision": decision["decision"],
              "reason": decision["reason"], "decided_at": decision["decided_at"],
              "promotion_seq": decision.get("seq"), "promotion": config.promotion.to_dict(),
              "challenger": {"version": version, "model": trained["model"], "scores": trained["scores"]},
              "champion": champion, "comparison": decision["details"].get("comparison")}
    urls = publish_comparison(report, layout.reports, layout.run_id, opts)
    return {"run": layout.root, "model": trained["model"], "decision": decision["decision"],
            "reason": decision["reason"], "champion": champion and champion["version"],
            "report": urls["markdown"], "scores": trained["scores"]}


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["retrain", *sys.argv[1:]]))
