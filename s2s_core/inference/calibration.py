"""Per-model flag thresholds: where ``low_confidence`` fires is read off the model's own dev set.

A log-prob's scale depends on the model (label smoothing, vocabulary, domain), so one fixed threshold
cannot serve every model: the one derived on the Bible model flags ~10 % of its rows, but a model of
another corpus may sit wholly above or below it. At the end of training the package records the
score below which its least confident ``CONFIDENCE_SHARE`` of dev translations fall; its translators
flag rows by that (``flags.thresholds_from``).
"""

from __future__ import annotations

from collections.abc import Sequence

from s2s_core.inference.translator import DecodeConfig, Translator

CONFIDENCE_SHARE = 0.1  # the least confident tenth: 21 chrF points below the rest (bench/RESULTS.md)
CALIBRATION_ROWS = 1000  # dev rows translated (the first ones): enough for a tenth's quantile
MIN_CALIBRATION_ROWS = 20  # fewer translated rows: the default threshold stays


def confidence_threshold(translator: Translator, sources: Sequence[str], config: DecodeConfig,
                         share: float = CONFIDENCE_SHARE) -> dict | None:
    """``{"min_mean_log_prob": x, "calibration": {...}}`` such that ``share`` of the translations of
    ``sources`` score below ``x``; None when too few rows translate to tell."""
    results = translator.translate(list(sources)[:CALIBRATION_ROWS], config)
    scores = sorted(t.score for t in results if t.status == "ok")
    if len(scores) < MIN_CALIBRATION_ROWS:
        return None
    k = max(1, round(share * len(scores)))
    # Midway between the k-th and the next score: exactly k rows below it, none on it.
    threshold = (scores[k - 1] + scores[k]) / 2
    return {"min_mean_log_prob": threshold,
            "calibration": {"rows": len(scores), "share": share, "beam_size": config.beam_size}}
