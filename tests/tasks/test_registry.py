"""Recording retrain decisions: a run re-executed after a crash repeats its decision, never judges itself."""

from __future__ import annotations

from s2s_core.registry.promotion import PromotionConfig
from s2s_core.registry.registry import Registry
from tasks.registry import decide_and_record
from tests.s2s_core.registry.test_registry import add_package
from tests.s2s_core.synthetic import reverse_tokenizers

SCORES = {"test": {"bleu": 12.0, "chrf": 40.0}}


def test_a_rerun_after_a_crash_that_followed_its_promotion_reports_the_promotion(tmp_path):
    registry = Registry(str(tmp_path / "store"), "rev")
    add_package(registry, reverse_tokenizers(), "v1")
    decide = dict(store=registry.store_url, name="rev", version="v1", run_id="rev-abc-20260105",
                  scores=SCORES, comparison=None, settings=PromotionConfig(), storage_options={})
    promoted = decide_and_record.fn(**decide, champion=None)
    assert promoted["decision"] == "promoted" and promoted["seq"] == 1
    # The flow crashed before publishing its report; the re-run finds its own model serving.
    again = decide_and_record.fn(**decide, champion=registry.champion().record)
    assert again == promoted
    assert [r["decision"] for r in registry.history()] == ["promoted"]  # no false rejection recorded


def test_failed_runs_are_recorded_each_time_and_do_not_block_a_later_decision(tmp_path):
    registry = Registry(str(tmp_path / "store"), "rev")
    add_package(registry, reverse_tokenizers(), "v1")
    decide = dict(store=registry.store_url, name="rev", version="v1", run_id="r1", scores=SCORES,
                  comparison=None, settings=PromotionConfig(), storage_options={}, champion=None)
    failed = decide_and_record.fn(**{**decide, "scores": {}}, failure="training failed: OSError: disk full")
    assert failed["decision"] == "rejected" and failed["details"]["failure"]
    assert registry.decision_of("r1") is None
    assert decide_and_record.fn(**decide)["decision"] == "promoted"
    assert [r["decision"] for r in registry.history()] == ["rejected", "promoted"]
