"""When a retrained challenger replaces the serving champion: a quality gate and a paired test.

Decision rule (``decide``), applied to every test set the two models were compared on:

1. Quality gate (always): challenger BLEU ≥ ``min_bleu`` and chrF ≥ ``min_chrf``. With no champion
   yet, passing the gate is enough to promote.
2. Against a champion: BLEU gain > 0 and ≥ ``min_bleu_gain`` points and paired bootstrap p < ``alpha``
   on every test set (requiring all sets keeps the overall false-promotion rate ≤ ``alpha``), and,
   with ``guard_chrf``, chrF not significantly worse (delta < 0 with p < ``alpha``).

The gain must be strictly positive whatever ``min_bleu_gain`` is: sacrebleu's paired bootstrap gives
identical systems its smallest p-value (no resample differs more than the observed 0), so p alone
would promote a copy of the champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromotionConfig:
    """Thresholds of the retrain-and-evaluate decision (see module docstring)."""

    min_bleu_gain: float = 0.0  # BLEU points the challenger must gain on every test set
    alpha: float = 0.05  # significance level of the paired bootstrap test
    min_bleu: float = 5.0  # quality gate: catches broken models (empty or degenerate output)
    min_chrf: float = 20.0
    guard_chrf: bool = True  # reject a BLEU win that comes with a significantly worse chrF
    n_bootstrap: int = 1000  # paired bootstrap resamples

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_bleu_gain < 0:
            raise ValueError(f"min_bleu_gain must be ≥ 0, got {self.min_bleu_gain}")
        if self.n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be ≥ 2, got {self.n_bootstrap}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # one line a person can read in the history


def decide(challenger: Mapping[str, Mapping[str, float]], comparison: Mapping[str, Mapping] | None,
           config: PromotionConfig) -> Decision:
    """Promote or reject from the challenger's scores and, with a champion, the paired comparison.

    ``challenger``: ``{test_set: {"bleu": score, "chrf": score}}``; ``comparison``: ``{test_set:
    paired_bootstrap(challenger, champion, ...)}``, or None when there is no champion.
    """
    if not challenger:
        return Decision(False, "no test sets to judge the challenger on")
    failures = [f"{name}: BLEU {s['bleu']:.2f} < {config.min_bleu:g} or chrF {s['chrf']:.2f} < "
                f"{config.min_chrf:g}" for name, s in challenger.items()
                if s["bleu"] < config.min_bleu or s["chrf"] < config.min_chrf]
    if failures:
        return Decision(False, "below the quality gate: " + "; ".join(failures))
    if comparison is None:
        scores = "; ".join(f"{n}: BLEU {s['bleu']:.2f}, chrF {s['chrf']:.2f}" for n, s in challenger.items())
        return Decision(True, f"first model: passes the quality gate ({scores})")
    missing = sorted(set(challenger) - set(comparison))
    if missing:
        return Decision(False, f"not compared with the champion on {missing}")
    wins, losses = [], []
    for name in challenger:
        bleu, chrf = comparison[name]["bleu"], comparison[name]["chrf"]
        summary = f"{name}: BLEU {bleu['delta']:+.2f} (p={bleu['p_value']:.3g})"
        if config.guard_chrf:
            summary += f", chrF {chrf['delta']:+.2f} (p={chrf['p_value']:.3g})"
        problems = []
        if not (bleu["delta"] > 0 and bleu["delta"] >= config.min_bleu_gain):
            need = f">= {config.min_bleu_gain:+.2f}" if config.min_bleu_gain > 0 else "> 0"
            problems.append(f"BLEU gain not {need}")
        elif bleu["p_value"] >= config.alpha:
            problems.append(f"not significant at alpha={config.alpha:g}")
        if config.guard_chrf and chrf["delta"] < 0 and chrf["p_value"] < config.alpha:
            problems.append("chrF significantly worse")
        if problems:
            losses.append(f"{summary}: {', '.join(problems)}")
        else:
            wins.append(summary)
    if losses:
        return Decision(False, "; ".join(losses))
    return Decision(True, f"significantly better than the champion at alpha={config.alpha:g}: "
                          + "; ".join(wins))
