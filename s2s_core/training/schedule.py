"""Learning-rate schedules with linear warm-up: inverse square root, reduce-on-plateau, constant."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SCHEDULES = ("inverse_sqrt", "plateau", "constant")


@dataclass
class LRSchedule:
    """Learning rate as a function of the step, plus a plateau factor driven by dev scores.

    All state lives in plain fields so ``state_dict`` round-trips exactly on resume.
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

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (1-based)."""
        step = max(step, 1)
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
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
