"""Scores with bootstrap confidence intervals, PNG figures and the markdown report."""

from __future__ import annotations

import io
import random

import matplotlib.image
import numpy as np
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF

from s2s_core.evaluation.metrics import corpus_score
from s2s_core.evaluation.report import (
    attention_heatmap_png,
    render_markdown,
    score_with_ci,
    training_curve_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORDS = [
    "the", "cat", "dog", "house", "tree", "river", "sat", "ran", "quickly", "slowly", "over", "under",
    "green", "red", "small", "big", "man", "woman", "child", "saw", "found", "bird", "city", "road",
]


def corpus(n: int = 60, seed: int = 0) -> tuple[list[str], list[str]]:
    """References and a noisy system output (word drops and substitutions), deterministic."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        hyp = [rng.choice(WORDS) if rng.random() < 0.25 else w for w in ref if rng.random() > 0.1]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp) or "the")
    return hyps, refs


def decode_png(data: bytes) -> np.ndarray:
    assert data.startswith(PNG_MAGIC)
    return matplotlib.image.imread(io.BytesIO(data), format="png")


# ---------------------------------------------------------------- score_with_ci
def test_perfect_system_has_degenerate_interval():
    _, refs = corpus(30)
    scores = score_with_ci(refs, refs, n_bootstrap=200)
    assert scores["bleu"]["score"] == pytest.approx(100.0)
    assert scores["bleu"]["ci95"] == pytest.approx([100.0, 100.0])
    assert scores["chrf"]["ci95"] == pytest.approx([100.0, 100.0])
    assert scores["ter"]["score"] == pytest.approx(0.0)
    assert scores["ter"]["ci95"] == pytest.approx([0.0, 0.0])


def test_noisy_system_interval_brackets_score_and_matches_plain_score():
    hyps, refs = corpus(60)
    scores = score_with_ci(hyps, refs, n_bootstrap=300)
    assert set(scores) == {"bleu", "chrf", "ter"}
    for name, s in scores.items():
        low, high = s["ci95"]
        assert low < s["score"] < high, (name, s)
        assert low < s["mean"] < high
        assert high - low == pytest.approx(2 * s["ci_halfwidth"], abs=1e-6)
        # The bootstrap does not change the point estimate: same as the plain wrapper.
        assert s["score"] == pytest.approx(corpus_score(name, hyps, refs).score)
        assert "nrefs:1|bs:300|seed:12345" in s["signature"]
    assert 10 < scores["bleu"]["score"] < 90


def test_interval_narrows_with_more_sentences():
    hyps, refs = corpus(40)
    small = score_with_ci(hyps, refs, names=("bleu", "chrf"), n_bootstrap=300)
    # Four copies of the same corpus: same corpus score, about half the spread (1/sqrt(4)).
    large = score_with_ci(hyps * 4, refs * 4, names=("bleu", "chrf"), n_bootstrap=300)
    for name in small:
        assert large[name]["score"] == pytest.approx(small[name]["score"])
        assert large[name]["ci_halfwidth"] < 0.7 * small[name]["ci_halfwidth"]


def test_deterministic_and_seed_follows_environment(monkeypatch):
    hyps, refs = corpus(40)
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)
    first = score_with_ci(hyps, refs, n_bootstrap=200)
    assert score_with_ci(hyps, refs, n_bootstrap=200) == first
    monkeypatch.setenv("SACREBLEU_SEED", "7")
    other = score_with_ci(hyps, refs, n_bootstrap=200)
    assert "seed:7" in other["bleu"]["signature"]
    assert other["bleu"]["score"] == first["bleu"]["score"]
    assert other["bleu"]["ci95"] != first["bleu"]["ci95"]


def test_default_bootstrap_and_no_bootstrap():
    hyps, refs = corpus(20)
    default = score_with_ci(hyps, refs, names=("bleu",))
    assert "bs:1000" in default["bleu"]["signature"]
    none = score_with_ci(hyps, refs, names=("bleu",), n_bootstrap=1)
    assert none["bleu"]["ci95"] is None and none["bleu"]["mean"] is None
    assert "bs:" not in none["bleu"]["signature"]
    assert none["bleu"]["score"] == default["bleu"]["score"]


def test_interval_is_sacrebleus_own_estimate():
    hyps, refs = corpus(50)
    ours = score_with_ci(hyps, refs, names=("bleu", "chrf"), n_bootstrap=250)
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        theirs = metric.corpus_score(hyps, [refs], n_bootstrap=250)
        assert ours[name]["mean"] == pytest.approx(float(theirs._mean), abs=1e-4)
        assert ours[name]["ci_halfwidth"] == pytest.approx(float(theirs._ci), abs=1e-4)
        assert ours[name]["signature"] == str(metric.get_signature())


def test_weak_system_whose_resamples_score_zero_gets_an_interval():
    # One hypothesis of 20 shares characters with its reference: about a third of the resamples miss
    # it and score 0 (sacrebleu's own chrF bootstrap then fails: Python 0.0 beside numpy.float32).
    refs = [f"reference sentence number {i}" for i in range(20)]
    hyps = ["zzz qqq"] * 19 + [refs[-1]]
    scores = score_with_ci(hyps, refs, names=("bleu", "chrf"), n_bootstrap=300)
    for name, s in scores.items():
        low, high = s["ci95"]
        assert low == 0.0 and 0.0 < s["mean"] < high <= 100.0, (name, s)
        assert s["score"] == pytest.approx(corpus_score(name, hyps, refs).score)


def test_interval_stays_inside_metric_range():
    # Two sentences: the symmetric mean ± halfwidth would go below 0 for TER.
    scores = score_with_ci(["the cat sat", "a dog"], ["the cat sat", "a dog ran"], n_bootstrap=100)
    for s in scores.values():
        assert s["ci95"][0] >= 0.0
    assert scores["chrf"]["ci95"][1] <= 100.0


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="references"):
        score_with_ci(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        score_with_ci([], [])


# ---------------------------------------------------------------- figures
HISTORY = [
    {"step": 10, "epoch": 0, "elapsed_seconds": 1.0, "loss": 5.1, "tokens_per_second": 900.0, "lr": 1e-3},
    {"step": 20, "epoch": 0, "elapsed_seconds": 2.0, "loss": 4.2, "tokens_per_second": 950.0, "lr": 1e-3,
     "dev_bleu": 3.5, "dev_chrf": 20.1},
    {"step": 30, "epoch": 1, "elapsed_seconds": 3.0, "loss": 3.6, "tokens_per_second": 940.0, "lr": 1e-3},
    {"step": 35, "epoch": 1, "elapsed_seconds": 3.5, "dev_bleu": 7.25, "dev_chrf": 28.4},
]


@pytest.mark.parametrize("history", [
    HISTORY,
    [r for r in HISTORY if "dev_bleu" not in r],  # log records only
    [r for r in HISTORY if "loss" not in r],  # eval records only
    [],
], ids=["full", "no-eval", "no-log", "empty"])
def test_training_curve_png(history):
    image = decode_png(training_curve_png(history))
    height, width = image.shape[:2]
    assert 300 < width < 2000 and 300 < height < 2000


def test_training_curve_draws_something():
    image = decode_png(training_curve_png(HISTORY))
    empty = decode_png(training_curve_png([]))
    # Curves, ticks and legend mean many more non-white pixels than two placeholder messages.
    assert (image[..., :3] < 0.9).any(-1).sum() > 2 * (empty[..., :3] < 0.9).any(-1).sum()


def test_attention_heatmap_png_from_tensor_and_lists():
    src = ["▁the", "▁cat", "▁sat", "$", "▁€5"]
    tgt = ["▁die", "▁Katze", "▁saß"]
    logits = torch.randn(len(tgt) + 1, len(src) + 1, generator=torch.Generator().manual_seed(0))
    weights = torch.softmax(logits, dim=-1)
    image = decode_png(attention_heatmap_png(src, tgt, weights))
    assert image.shape[0] > 150 and image.shape[1] > 200
    decode_png(attention_heatmap_png(src, tgt, weights.tolist()))


def test_attention_heatmap_scales_and_validates_shape():
    small = decode_png(attention_heatmap_png(["a"], ["b"], [[0.5, 0.5], [0.1, 0.9]]))
    n = 40
    big = decode_png(attention_heatmap_png([f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)],
                                           np.full((n + 1, n + 1), 1 / (n + 1))))
    assert big.shape[0] > small.shape[0] and big.shape[1] > small.shape[1]
    with pytest.raises(ValueError, match="expected"):
        attention_heatmap_png(["a", "b"], ["c"], np.zeros((2, 2)))


# ---------------------------------------------------------------- markdown
def test_render_markdown():
    hyps, refs = corpus(20)
    scores = score_with_ci(hyps, refs, n_bootstrap=100)
    report = {
        "model": "s3://bucket/models/run-1/model.s2s",
        "test_sets": {
            "newstest": {"rows": 20, "scores": scores, "decode": {"beam_size": 4, "alpha": 0.6},
                         "examples": [{"src": "a | b", "ref": "x *y*", "hyp": hyps[0]},
                                      {"src": "s2", "ref": "r2", "hyp": "h2"}]},
        },
        "statuses": {"ok": 19, "truncated": 1},
        "figures": {"Training curve": "training_curve.png", "Attention": "attention 0.png"},
    }
    md = render_markdown(report)
    assert md.startswith("# Evaluation report\n")
    assert "`s3://bucket/models/run-1/model.s2s`" in md
    assert "## newstest" in md and "Sentences: 20" in md and "beam\\_size=4, alpha=0.6" in md
    assert "| metric | score | 95% CI | signature |" in md
    for name, s in scores.items():
        low, high = s["ci95"]
        signature = s["signature"].replace("|", "\\|")
        row = f"| {name} | {s['score']:.2f} | [{low:.2f}, {high:.2f}] | `{signature}` |"
        assert row in md
    # Every table row keeps exactly four cells: pipes in signatures and text are escaped.
    for line in md.splitlines():
        if line.startswith("| bleu"):
            assert line.replace("\\|", "").count("|") == 5
    assert "a \\| b" in md and "x \\*y\\*" in md and hyps[0] in md
    assert "| truncated | 1 |" in md
    assert "![Training curve](training_curve.png)" in md and "(attention%200.png)" in md


def test_render_markdown_minimal():
    md = render_markdown({"test_sets": {"dev": {"rows": 0}}})
    assert "## dev" in md and "Figures" not in md and "| metric" not in md
    no_ci = score_with_ci(["a b c d"], ["a b c d"], names=("bleu",), n_bootstrap=1)
    md = render_markdown({"test_sets": {"dev": {"scores": no_ci}}})
    assert "| bleu | 100.00 | – |" in md


@pytest.mark.parametrize(("folder", "expected"), [
    ("/runs/r1/reports", "- Training curve: `/runs/r1/reports/training_curve.png`"),
    ("s3://bucket/runs/r1/reports/", "- Training curve: `s3://bucket/runs/r1/reports/training_curve.png`"),
    ("https://example.org/reports", "![Training curve](https://example.org/reports/training_curve.png)"),
])
def test_figures_of_a_report_shown_elsewhere_point_to_where_they_are_stored(folder, expected):
    """A viewer such as the Prefect UI can show an image only from a URL a browser can fetch."""
    md = render_markdown({"test_sets": {}, "figures": {"Training curve": "training_curve.png"}},
                         figures_at=folder)
    assert expected in md
    assert ("![" in md) == folder.startswith("https://")
