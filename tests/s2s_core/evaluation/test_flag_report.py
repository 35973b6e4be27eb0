"""Quality flags in the evaluation report: per-flag counts and sentence chrF of flagged vs other rows."""

import pytest
from sacrebleu.metrics import CHRF

from s2s_core.evaluation.report import flag_quality, render_markdown


def test_flag_quality_compares_flagged_rows_with_the_others():
    hyps = ["the house is big", "the the the the", "a cat", "totally wrong"]
    refs = ["the house is big", "the dog runs", "a cat", "the right answer"]
    flags = [(), ("repetition",), (), ("low_confidence", "repetition")]
    chrf = [CHRF().sentence_score(h, [r]).score for h, r in zip(hyps, refs, strict=True)]
    out = flag_quality(flags, hyps, refs, names=("length_ratio", "repetition", "low_confidence"))
    assert list(out) == ["length_ratio", "repetition", "low_confidence", "any"]
    assert out["length_ratio"] == {"rows": 0, "chrf": None,
                                   "others_chrf": pytest.approx(sum(chrf) / 4, abs=0.01)}
    assert out["repetition"]["rows"] == 2
    assert out["repetition"]["chrf"] == pytest.approx((chrf[1] + chrf[3]) / 2, abs=0.01)
    assert out["repetition"]["others_chrf"] == pytest.approx((chrf[0] + chrf[2]) / 2, abs=0.01)
    assert out["low_confidence"] == {"rows": 1, "chrf": pytest.approx(chrf[3], abs=0.01),
                                    "others_chrf": pytest.approx(sum(chrf[:3]) / 3, abs=0.01)}
    assert out["any"]["rows"] == 2


def test_the_markdown_report_shows_the_flag_table():
    flags = {"repetition": {"rows": 3, "chrf": 12.5, "others_chrf": 40.0},
             "copy": {"rows": 0, "chrf": None, "others_chrf": 38.0}}
    text = render_markdown({"test_sets": {"test": {"rows": 10, "flags": flags}}})
    assert "| repetition | 3 | 12.50 | 40.00 |" in text
    assert "| copy | 0 | – | 38.00 |" in text


def test_the_markdown_report_gives_the_placeholder_exact_match_rate():
    agreement = {"rows_with_spans": 200, "exact": 199, "rate": 0.995, "invented": 2}
    text = render_markdown({"test_sets": {"test": {"rows": 900, "placeholders": agreement}}})
    assert "Placeholder exact match: 99.5% (199 of 200 rows with placeholders or markup); 2 other" in text
    none = {"rows_with_spans": 0, "exact": 0, "rate": None, "invented": 0}
    assert "no source row holds one" in render_markdown({"test_sets": {"t": {"placeholders": none}}})
