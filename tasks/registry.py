"""Registry tasks for retrain-and-evaluate: find the champion, compare, decide, publish the comparison."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from s2s_core import storage
from s2s_core.evaluation.report import render_comparison_markdown
from s2s_core.evaluation.significance import paired_bootstrap
from s2s_core.registry.promotion import PromotionConfig, decide
from s2s_core.registry.registry import Champion, PromotionConflict, Registry
from s2s_core.storage import Store
from s2s_core.text.prepare import read_parquet
from tasks.common import IO_RETRIES, artifact_key, run_logger
from tasks.events import emit_promotion


def _champion(record: dict | None) -> Champion | None:
    return Champion(record["seq"], record["version"], record["model"], record) if record else None


# Never cached: the champion read here is the base of the compare-and-swap, so it must be fresh.
@task(name="find-champion", **IO_RETRIES, cache_policy=NONE)
def find_champion(store: str, name: str, storage_options: dict[str, Any]) -> dict | None:
    """The promotion record of the serving model, or None before the first promotion."""
    champion = Registry(store, name, storage_options).champion()
    return champion.record if champion else None


@task(name="compare-with-champion", **IO_RETRIES)
def compare_with_champion(challenger_reports: str, champion_reports: str, tests: list[str],
                          n_bootstrap: int, storage_options: dict[str, Any]) -> dict:
    """Paired bootstrap of both models' translations of each test set (``<test>.translations.parquet``)."""
    out = {}
    for test in tests:
        name = f"{test}.translations.parquet"
        challenger = read_parquet(storage.join(challenger_reports, name), storage_options)
        champion = read_parquet(storage.join(champion_reports, name), storage_options)
        # A paired test is only meaningful on the very same sentences in the same order.
        if challenger.select("src", "tgt").to_dicts() != champion.select("src", "tgt").to_dicts():
            raise ValueError(f"test set {test!r}: the two models' translations are not of the same sentences")
        out[test] = paired_bootstrap(challenger["hyp"].to_list(), champion["hyp"].to_list(),
                                     challenger["tgt"].to_list(), n_bootstrap=n_bootstrap)
        run_logger().info("%s: %s", test, ", ".join(
            f"{m.upper()} {r['delta']:+.2f} (p={r['p_value']:.3g})" for m, r in out[test].items()))
    return out


@task(name="check-registry-store", **IO_RETRIES, cache_policy=NONE)
def check_registry_store(store: str, name: str, storage_options: dict[str, Any]) -> None:
    """Refuse a store whose exclusive creates are not exclusive: promotions would overwrite each other."""
    Registry(store, name, storage_options).folder.check_exclusive_create()


@task(name="find-decision", **IO_RETRIES, cache_policy=NONE)
def find_decision(store: str, name: str, run_id: str, storage_options: dict[str, Any]) -> dict | None:
    """The decision this run already recorded before a crash (its promotion first), or None."""
    return Registry(store, name, storage_options).decision_of(run_id)


# Retried only for transient I/O: a re-run finds the decision already recorded (``decision_of``)
# instead of recording a second one, and a promotion retried by the same run is recognised as its own.
@task(name="decide-and-record", **IO_RETRIES, cache_policy=NONE)
def decide_and_record(store: str, name: str, version: str, run_id: str, champion: dict | None,
                      scores: dict, comparison: dict | None, settings: PromotionConfig,
                      storage_options: dict[str, Any], failure: str | None = None,
                      champion_scores: dict | None = None) -> dict:
    """Apply the decision rule and record it: promote by compare-and-swap, or record the rejection."""
    logger = run_logger()
    registry, base = Registry(store, name, storage_options), _champion(champion)
    prior = None if failure else registry.decision_of(run_id)
    if prior:  # this run decided before a crash: the same decision, not a judgement of its own promotion
        logger.info("run %s already %s %s: %s", run_id, prior["decision"], prior["version"], prior["reason"])
        registry.publish_views()  # the crash may have come before they were rewritten
        return prior
    details = {"scores": scores, "comparison": comparison, "promotion": settings.to_dict(),
               "champion": base and {"seq": base.seq, "version": base.version, "model": base.model,
                                     "scores": champion_scores}}
    if failure:
        promote, reason = False, failure
        details["failure"] = True
    elif base and base.version == version:
        promote, reason = False, f"{version} is already the champion (promotion {base.seq})"
    else:
        decision = decide(scores, comparison, settings)
        promote, reason = decision.promote, decision.reason
    if promote:
        try:
            record = registry.promote(version, base, reason, details, run_id=run_id)
            logger.info("promoted %s (promotion %d): %s", version, record["seq"], reason)
            emit_promotion(store, name, record)  # automations react: translate-on-promotion
            return record
        except PromotionConflict as err:
            reason = f"{err}; the comparison was against a champion that is no longer serving"
    record = registry.reject(version, base, reason, details, run_id=run_id)
    logger.info("rejected %s: %s", version, reason)
    return record


@task(name="publish-comparison", **IO_RETRIES)
def publish_comparison(report: dict, report_url: str, run_id: str, storage_options: dict[str, Any]) -> dict:
    """Write ``comparison.json`` and ``comparison.md`` under ``report_url``; publish the markdown."""
    markdown = render_comparison_markdown(report)
    reports = Store(report_url, storage_options)
    reports.write_json("comparison.json", report, indent=2, default=str)
    reports.write_text("comparison.md", markdown)
    urls = {"json": reports.url_of("comparison.json"), "markdown": reports.url_of("comparison.md")}
    create_markdown_artifact(markdown, key=artifact_key(run_id, "retrain"),
                             description=f"retrain decision ({urls['markdown']})")
    return urls
