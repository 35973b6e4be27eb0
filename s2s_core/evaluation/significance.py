"""Paired bootstrap significance test between two systems on the same test set (challenger vs champion)."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

PAIRED_METRICS = {"bleu": BLEU, "chrf": CHRF}


def paired_bootstrap(system: Sequence[str], baseline: Sequence[str], references: Sequence[str],
                     names: Sequence[str] = ("bleu", "chrf"), n_bootstrap: int = 1000) -> dict[str, dict]:
    """Compare ``system`` with ``baseline`` hypotheses of the same sources; per metric name::

        {"bleu": {"baseline": 20.1, "system": 22.4,   # corpus scores on the whole test set
                  "delta": 2.3,                       # system - baseline
                  "p_value": 0.004,                   # two-sided: read the direction from delta
                  "system_ci95": [21.0, 23.8],        # bootstrap 95% interval of the system's score
                  "signature": "nrefs:1|bs:1000|seed:12345|case:mixed|..."}}
    """
    if not len(system) == len(baseline) == len(references):
        raise ValueError(f"{len(system)} system and {len(baseline)} baseline hypotheses "
                         f"for {len(references)} references")
    if not references:
        raise ValueError("cannot compare systems on an empty test set")
    if n_bootstrap < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 resamples, got {n_bootstrap}")
    metrics = {name: PAIRED_METRICS[name]() for name in names}
    # sacrebleu's paired bootstrap (Koehn 2004, as Moses' bootstrap-hypothesis-difference-significance.pl):
    # both systems are scored on the same resampled sentence sets; the p-value is the share of
    # resamples whose (centred) absolute difference exceeds the observed one. Resampling is seeded
    # from SACREBLEU_SEED (default 12345), so results are reproducible; the signature records it.
    test = PairedTest([("baseline", list(baseline)), ("system", list(system))], metrics,
                      references=[list(references)], test_type="bs", n_samples=n_bootstrap)
    signatures, results = test()
    # sacrebleu keys its results by the score's display name ("BLEU", "chrF2"); map them back to ours
    # through the metric objects it kept.
    ours = {id(metric): name for name, metric in metrics.items()}
    out = {}
    for display, metric in test.metrics.items():
        base, sys = results[display]
        ci95 = [sys.mean - sys.ci, sys.mean + sys.ci] if sys.mean is not None else None
        out[ours[id(metric)]] = {
            "baseline": float(base.score), "system": float(sys.score),
            "delta": float(sys.score - base.score), "p_value": float(sys.p_value),
            "system_ci95": [float(v) for v in ci95] if ci95 else None,
            "signature": str(signatures[display].format()),
        }
    return {name: out[name] for name in names}
