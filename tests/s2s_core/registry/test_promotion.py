"""The promotion rule on real paired bootstrap tests (sacrebleu) of synthetic systems."""

from __future__ import annotations

import random

import pytest

from s2s_core.evaluation.metrics import corpus_score
from s2s_core.evaluation.significance import paired_bootstrap
from s2s_core.registry.promotion import PromotionConfig, decide

WORDS = ["in", "the", "beginning", "god", "created", "heaven", "and", "earth", "light", "was", "good",
         "darkness", "waters", "face", "spirit"]


def corpus(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def damage(sentences: list[str], every: int, seed: int = 1) -> list[str]:
    """Drop the second half of every ``every``-th sentence: a worse system on the same inputs."""
    rng = random.Random(seed)
    out = []
    for i, s in enumerate(sentences):
        words = s.split()
        if i % every == 0:
            words = words[: len(words) // 2] + [rng.choice(WORDS)]
        out.append(" ".join(words))
    return out


REFS = corpus()
GOOD, WORSE = damage(REFS, every=4), damage(REFS, every=2)
LOW_GATE = PromotionConfig(min_bleu=1.0, min_chrf=1.0, n_bootstrap=300)


def scores(hyps: list[str]) -> dict:
    return {"test": {m: corpus_score(m, hyps, REFS).score for m in ("bleu", "chrf")}}


def test_paired_bootstrap_reports_both_metrics_with_direction_and_signature():
    result = paired_bootstrap(GOOD, WORSE, REFS, n_bootstrap=300)
    for metric in ("bleu", "chrf"):
        r = result[metric]
        assert r["delta"] == pytest.approx(r["system"] - r["baseline"]) and r["delta"] > 0
        assert r["p_value"] < 0.05 and r["system_ci95"][0] <= r["system"] <= r["system_ci95"][1] + 1
        assert "bs:300" in r["signature"] and "seed:12345" in r["signature"]
    assert result["bleu"]["system"] == pytest.approx(corpus_score("bleu", GOOD, REFS).score)
    assert paired_bootstrap(GOOD, WORSE, REFS, n_bootstrap=300) == result  # seeded: reproducible


def test_a_significantly_better_challenger_is_promoted():
    decision = decide(scores(GOOD), {"test": paired_bootstrap(GOOD, WORSE, REFS, n_bootstrap=300)}, LOW_GATE)
    assert decision.promote and decision.reason.startswith("significantly better than the champion")


def test_a_worse_challenger_is_rejected():
    decision = decide(scores(WORSE), {"test": paired_bootstrap(WORSE, GOOD, REFS, n_bootstrap=300)}, LOW_GATE)
    assert not decision.promote and "BLEU gain not > 0" in decision.reason


def test_a_copy_of_the_champion_is_not_promoted_although_sacrebleu_gives_it_a_tiny_p_value():
    comparison = paired_bootstrap(GOOD, GOOD, REFS, n_bootstrap=300)
    assert comparison["bleu"]["delta"] == 0 and comparison["bleu"]["p_value"] < 0.05  # the quirk
    assert not decide(scores(GOOD), {"test": comparison}, LOW_GATE).promote


def test_the_gain_threshold_and_alpha_apply():
    comparison = {"test": paired_bootstrap(GOOD, WORSE, REFS, n_bootstrap=300)}
    gain = comparison["test"]["bleu"]["delta"]
    strict = PromotionConfig(min_bleu=1.0, min_chrf=1.0, min_bleu_gain=gain + 1)
    assert "BLEU gain not >=" in decide(scores(GOOD), comparison, strict).reason
    nearly = {"test": {**comparison["test"], "bleu": {**comparison["test"]["bleu"], "p_value": 0.2}}}
    assert "not significant at alpha=0.05" in decide(scores(GOOD), nearly, LOW_GATE).reason


def test_a_significantly_worse_chrf_vetoes_a_bleu_win():
    comparison = paired_bootstrap(GOOD, WORSE, REFS, n_bootstrap=300)
    worse_chrf = {**comparison["chrf"], "delta": -2.0, "p_value": 0.01}
    decision = decide(scores(GOOD), {"test": {**comparison, "chrf": worse_chrf}}, LOW_GATE)
    assert not decision.promote and "chrF significantly worse" in decision.reason
    no_guard = PromotionConfig(min_bleu=1.0, min_chrf=1.0, guard_chrf=False)
    assert decide(scores(GOOD), {"test": {**comparison, "chrf": worse_chrf}}, no_guard).promote


def test_without_a_champion_the_quality_gate_decides():
    assert decide(scores(GOOD), None, LOW_GATE).promote
    high = PromotionConfig(min_bleu=99.0)
    decision = decide(scores(GOOD), None, high)
    assert not decision.promote and decision.reason.startswith("below the quality gate: test: BLEU")
    assert not decide({}, None, LOW_GATE).promote


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"alpha": 1.0}, {"min_bleu_gain": -1.0}, {"n_bootstrap": 1}])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PromotionConfig(**bad)
