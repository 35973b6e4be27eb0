"""Retrain-and-evaluate on the tiny config: a first model is promoted, a crippled one is rejected."""

from __future__ import annotations

import json

import pytest

from flows.cli import main
from s2s_core import storage
from s2s_core.registry.registry import Registry
from tests.flows.conftest import TINY, tiny_config

# The tiny model is weak: a gate at 0 lets the first one through; the comparison decides the rest.
# No dev evaluation or heatmaps: only the test-set scores matter here (CPU time is shared).
RETRAIN = ["promotion.min_bleu=0", "promotion.min_chrf=0", "promotion.n_bootstrap=200",
           "train.max_steps=20", "train.eval_every=0", "evaluate.heatmaps=0"]


@pytest.fixture(scope="module")
def two_retrains(prefect_harness, tmp_path_factory):
    from flows.retrain import retrain_flow

    store = str(tmp_path_factory.mktemp("store"))
    first = retrain_flow(tiny_config(store, RETRAIN))
    pointer = storage.read_bytes(f"{store}/models/tiny/current")
    # One training step: a crippled challenger; the gain threshold makes its rejection unambiguous.
    second = retrain_flow(tiny_config(store, [*RETRAIN, "train.max_steps=1", "promotion.min_bleu_gain=5"]))
    return store, first, pointer, second


def test_first_retrain_promotes_after_the_quality_gate(two_retrains):
    store, first, _, _ = two_retrains
    assert first["decision"] == "promoted" and first["champion"] is None
    assert first["reason"].startswith("first model: passes the quality gate")
    report = json.loads(storage.read_text(first["report"].replace(".md", ".json")))
    assert report["champion"] is None and report["comparison"] is None and report["promotion_seq"] == 1
    assert "**Decision: promoted.**" in storage.read_text(first["report"])


def test_crippled_challenger_is_rejected_and_the_champion_keeps_serving(two_retrains):
    store, first, pointer, second = two_retrains
    assert second["decision"] == "rejected" and second["champion"] == first["model"].rsplit("/", 1)[-1]
    assert "BLEU gain not >= +5.00" in second["reason"]
    registry = Registry(store, "tiny")
    assert registry.champion().model == first["model"] and registry.champion().seq == 1
    assert storage.read_bytes(f"{store}/models/tiny/current") == pointer
    # Both models were scored on the challenger run's test set, and compared pairwise.
    report = json.loads(storage.read_text(second["report"].replace(".md", ".json")))
    paired = report["comparison"]["test"]
    assert set(paired) == {"bleu", "chrf"} and paired["bleu"]["delta"] < 5
    assert paired["bleu"]["signature"].startswith("nrefs:1|bs:200|seed:12345")
    assert report["champion"]["scores"]["test"]["bleu"] == pytest.approx(paired["bleu"]["baseline"])
    assert report["challenger"]["scores"]["test"]["bleu"] == pytest.approx(paired["bleu"]["system"])
    markdown = storage.read_text(second["report"])
    assert "**Decision: rejected.**" in markdown and "| chrf |" in markdown
    assert storage.exists(f"{second['run']}/reports/champion/test.translations.parquet")


def test_history_records_both_decisions_with_reasons(two_retrains):
    store, first, _, second = two_retrains
    history = Registry(store, "tiny").history()
    assert [(r["decision"], r["model"]) for r in history] == [("promoted", first["model"]),
                                                              ("rejected", second["model"])]
    assert history[1]["reason"] == second["reason"] and history[1]["champion"]["seq"] == 1
    assert history[1]["details"]["comparison"]["test"]["bleu"]["delta"] < 5
    lines = storage.read_text(f"{store}/models/tiny/history.jsonl").splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["promoted", "rejected"]


def test_a_challenger_whose_training_fails_is_recorded_and_never_promoted(prefect_harness, tmp_path):
    from flows.retrain import retrain_flow

    store = str(tmp_path / "store")
    # Every pair is longer than 2 tokens: the trainer has no examples and fails.
    config = tiny_config(store, [*RETRAIN, "model.max_src_len=2"])
    with pytest.raises(ValueError, match="no training examples"):
        retrain_flow(config)
    registry = Registry(store, "tiny")
    assert registry.champion() is None
    (record,) = registry.history()
    assert record["decision"] == "rejected" and record["reason"].startswith("training failed: ValueError")


def test_cli_rejects_bad_promotion_settings_in_one_line(capsys):
    assert main(["retrain", str(TINY), "--set", "promotion.alpha=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "s2s: error: invalid config: promotion: alpha must be in (0, 1), got 2.0")
