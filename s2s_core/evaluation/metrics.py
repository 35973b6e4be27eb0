"""Corpus-level BLEU, chrF and TER with sacrebleu on detokenized text, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


@dataclass(frozen=True)
class Score:
    name: str
    score: float
    signature: str

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_score(name: str, hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """One sacrebleu metric (``bleu``, ``chrf`` or ``ter``) with its default settings."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metric = METRICS[name]()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return Score(name, float(result.score), str(metric.get_signature()))


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str],
                  names: Sequence[str] = ("bleu", "chrf")) -> dict[str, Score]:
    return {name: corpus_score(name, hypotheses, references) for name in names}


# Feasible range of each metric; bootstrap intervals are clipped to it (see ``corpus_score_ci``).
METRIC_RANGES = {"bleu": (0.0, 100.0), "chrf": (0.0, 100.0), "ter": (0.0, float("inf"))}


@dataclass(frozen=True)
class BootstrapScore(Score):
    """A corpus score with sacrebleu's bootstrap estimate: mean ± half-width of the 95% interval."""

    mean: float | None = None  # mean of the bootstrap resample scores
    ci_halfwidth: float | None = None  # half the spread of the 2.5th..97.5th percentile resamples
    ci95: tuple[float, float] | None = None  # (mean - halfwidth, mean + halfwidth), clipped to range


def corpus_score_ci(name: str, hypotheses: Sequence[str], references: Sequence[str],
                    n_bootstrap: int = 1000) -> BootstrapScore:
    """One sacrebleu metric with a bootstrap 95% confidence interval (none if ``n_bootstrap`` ≤ 1).

    Resampling is sacrebleu's own (see ``_bootstrap``), seeded from the
    ``SACREBLEU_SEED`` environment variable (default 12345, ``none`` = unseeded), so the interval is
    deterministic unless that variable says otherwise; the signature records ``bs`` and ``seed``.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("cannot score an empty corpus")  # sacrebleu fails with an IndexError
    if n_bootstrap <= 1:
        plain = corpus_score(name, hypotheses, references)
        return BootstrapScore(name, plain.score, plain.signature)
    metric = METRICS[name]()
    score, resampled = _bootstrap(metric, list(hypotheses), [list(references)], n_bootstrap)
    # The symmetric interval can spill outside the metric's range on small corpora (e.g. a negative
    # TER), where every resample score lies inside it, so clip.
    mean, half = _mean_and_halfwidth(resampled)
    low, high = METRIC_RANGES.get(name, (float("-inf"), float("inf")))
    ci95 = (max(low, mean - half), min(high, mean + half))
    return BootstrapScore(name, score, str(metric.get_signature()), mean, half, ci95)


def _bootstrap(metric, hypotheses: list[str], references: list[list[str]],
               n_bootstrap: int) -> tuple[float, list[float]]:
    """The corpus score and the scores of ``n_bootstrap`` resamples, the way sacrebleu draws them.

    This is ``metric.corpus_score(..., n_bootstrap=N)`` without its last step: sacrebleu 2.x averages
    the resample scores with ``statistics.mean``, which raises ``TypeError`` when a resample without
    a single matching unigram scores a Python ``0.0`` beside the others' ``numpy.float32`` (a weak
    model on a small test set). The draw, its seed and the signature (``bs``, ``seed``) are its own.
    """
    from sacrebleu.significance import _bootstrap_resample

    metric._check_corpus_score_args(hypotheses, references)
    stats = metric._extract_corpus_statistics(hypotheses, references)
    score = float(metric._aggregate_and_compute(stats).score)
    metric.n_bootstrap = n_bootstrap  # read by the signature
    metric.seed, resampled = _bootstrap_resample(stats, metric, n_bootstrap)
    return score, [float(s.score) for s in resampled]


def _mean_and_halfwidth(scores: list[float]) -> tuple[float, float]:
    """sacrebleu's estimate: the mean and half the 2.5th..97.5th percentile spread of resamples."""
    ordered = sorted(scores)
    lower = len(ordered) // 40
    return sum(ordered) / len(ordered), 0.5 * (ordered[len(ordered) - lower - 1] - ordered[lower])
