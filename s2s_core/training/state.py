"""Where training stands (``TrainState``, saved in every checkpoint) and when it stops."""

from __future__ import annotations

from dataclasses import dataclass

from s2s_core.training.config import TrainConfig


@dataclass
class TrainState:
    """Progress, budget and early-stopping bookkeeping; restoring it resumes training exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_seconds: float = 0.0  # wall clock over all runs, dev evaluation included
    eval_seconds: float = 0.0
    target_tokens: int = 0  # target tokens trained on (EOS included)
    best_bleu: float = -1.0
    best_step: int = 0
    evals_without_improvement: int = 0
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    nonfinite_in_a_row: int = 0
    stop_reason: str | None = None


def stop_reason(config: TrainConfig, state: TrainState) -> str | None:
    """The first stop condition that holds, or None to go on training."""
    c, s = config, state
    if c.max_steps is not None and s.step >= c.max_steps:
        return "max_steps"
    if c.max_epochs is not None and s.epoch >= c.max_epochs:
        return "max_epochs"
    if c.max_minutes is not None and s.elapsed_seconds >= c.max_minutes * 60:
        return "max_minutes"
    if c.patience is not None and s.evals_without_improvement >= c.patience:
        return "early_stopping"
    return None


def budget_spent(config: TrainConfig, state: TrainState, batches_per_epoch: int) -> float:
    """The share of the training budget used so far (0–1): the furthest along of the steps
    (``max_steps``), the epochs (``max_epochs``) and the wall clock (``max_minutes``), whichever is set.

    Training stops when one of them reaches 1, so a schedule that decays with this share reaches zero at
    the stop, whichever bound ends the run. It reads only ``TrainState``, which every checkpoint holds:
    a resumed run goes on from the share the interrupted one had reached.
    """
    c, s = config, state
    shares = [0.0]
    if c.max_steps:
        shares.append(s.step / c.max_steps)
    if c.max_epochs:
        shares.append((s.epoch + s.batch_in_epoch / max(batches_per_epoch, 1)) / c.max_epochs)
    if c.max_minutes:
        shares.append(s.elapsed_seconds / (c.max_minutes * 60))
    return min(1.0, max(shares))
