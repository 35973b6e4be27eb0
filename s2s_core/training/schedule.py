"""Learning-rate schedules with linear warm-up: inverse square root, reduce-on-plateau, constant, and
budget-aware linear or cosine decay that reaches zero exactly where the training budget ends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SCHEDULES = ("inverse_sqrt", "plateau", "constant", "linear", "cosine")
BUDGET_SCHEDULES = ("linear", "cosine")  # decay with the share of the budget spent, to zero at its end


@dataclass
class LRSchedule:
    """Learning rate as a function of the step and of the budget spent, plus a plateau factor driven by
    dev scores.

    All state lives in plain fields so ``state_dict`` round-trips exactly on resume; the budget spent
    is not state here but read from the restored ``TrainState`` (``state.budget_spent``), so a resumed
    run continues the decay where the interrupted one left it.
    """

    base_lr: float
    kind: str = "inverse_sqrt"
    warmup_steps: int = 1000
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    scale: float = 1.0
    best: float = field(default=-math.inf)
    bad_evals: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}")

    def lr(self, step: int, spent: float = 0.0) -> float:
        """Learning rate for optimizer step ``step`` (1-based), ``spent`` the share of the training budget
        used before it (0–1; only the budget-aware schedules read it)."""
        step = max(step, 1)
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.kind in BUDGET_SCHEDULES:
            left = 1.0 - min(max(spent, 0.0), 1.0)
            decay = left if self.kind == "linear" else 0.5 * (1.0 - math.cos(math.pi * left))
            # No floor: the point of these schedules is a rate of zero at the budget's end.
            return self.base_lr * warm * decay * self.scale
        if self.kind == "inverse_sqrt" and self.warmup_steps > 0 and step > self.warmup_steps:
            warm = math.sqrt(self.warmup_steps / step)
        return max(self.min_lr, self.base_lr * warm * self.scale)

    def observe(self, dev_score: float) -> None:
        """Record a dev score (higher is better); on a plateau, decay the rate."""
        if dev_score > self.best:
            self.best, self.bad_evals = dev_score, 0
            return
        self.bad_evals += 1
        if self.kind == "plateau" and self.bad_evals >= self.plateau_patience:
            self.scale *= self.plateau_factor
            self.bad_evals = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad_evals = state["scale"], state["best"], state["bad_evals"]
