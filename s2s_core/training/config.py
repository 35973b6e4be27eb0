"""``TrainConfig``: every training setting (batching, optimizer, schedule, stop conditions, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

from s2s_core.configs import dataclass_from_dict
from s2s_core.training.schedule import SCHEDULES


@dataclass(frozen=True)
class TrainConfig:
    max_tokens: int = 4000  # padded target (or source) tokens per batch
    max_sentences: int | None = None
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    # inverse_sqrt | plateau | constant | linear | cosine; the last two decay to zero at the end of the
    # budget (max_steps, max_epochs or max_minutes, whichever is reached first), after the warm-up.
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 500
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    label_smoothing: float = 0.1
    average_decay: float | None = None  # weight averaging (EMA) per step, e.g. 0.998; None: off
    clip_norm: float = 1.0
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None  # wall-clock budget over all (resumed) runs
    eval_every: int = 1000  # steps; 0 disables periodic dev evaluation
    eval_beam_size: int = 1
    eval_max_sentences: int | None = None  # dev subset used during training
    patience: int | None = 5  # early stopping: dev evaluations without BLEU improvement
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every evaluation
    log_every: int = 100
    amp: str = "auto"
    device: str = "auto"
    seed: int = 1234
    # Warm start: "champion" (the serving model of this name) or a model package URL. Training begins
    # from its weights with its tokenizer and a fresh optimizer; resolved by the pipeline, not the trainer.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of max_steps, max_epochs or max_minutes")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.init_from is not None and not self.init_from.strip():
            raise ValueError('init_from must be "champion" or a model package URL')
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be ≥ 1, got {self.max_tokens}")
        if self.average_decay is not None and not 0.0 < self.average_decay < 1.0:
            raise ValueError(f"average_decay must be in (0, 1), got {self.average_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return dataclass_from_dict(cls, data)
