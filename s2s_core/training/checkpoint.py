"""Training checkpoints: what they hold, how they are read safely, and the run's checkpoint folder.

``last.pt`` holds everything exact resume needs: weights, optimizer, AMP scaler, LR schedule, progress,
history and every rank's RNG states, and the fingerprint of what it was trained on (the encoded
training data, the dev set, the tokenizer): resuming over other data is refused. ``best.pt`` holds
the weights with the best dev BLEU and the progress at that evaluation. Both live in a ``Store`` of
the checkpoint folder; rank 0 writes them.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import asdict
from typing import Any

import torch

from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.storage import Store
from s2s_core.training.averaging import WeightAverage
from s2s_core.training.distributed import ProcessGroup, all_gather_objects
from s2s_core.training.schedule import LRSchedule
from s2s_core.training.state import TrainState

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
LAST, BEST = "last.pt", "best.pt"
# What a checkpoint's data fingerprint covers, as an error message names it.
FINGERPRINT_PARTS = {"train": "training data", "dev": "dev set", "tokenizer": "tokenizer"}


class ResumeMismatchError(ValueError):
    """A run's last checkpoint was trained on other data or another tokenizer than this run has."""


class Checkpointer:
    """Saves and restores one trainer's checkpoints; the objects it restores are updated in place."""

    def __init__(self, store: Store, model: Seq2Seq, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, schedule: LRSchedule, group: ProcessGroup,
                 fingerprint: dict[str, str] | None = None, average: WeightAverage | None = None):
        self.store = store
        self.average = average
        self.model, self.optimizer, self.scaler, self.schedule = model, optimizer, scaler, schedule
        self.group = group
        self.fingerprint = fingerprint  # {part: hash} of what this run trains on (FINGERPRINT_PARTS)

    def payload(self, state: TrainState, history: list[dict], full: bool) -> dict[str, Any]:
        """Weights and progress; ``full`` adds what exact resume needs (collective: every rank calls it)."""
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "state": asdict(state),
            "history": history,
            "data": self.fingerprint,
        }
        if full:
            payload.update(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                           schedule=self.schedule.state_dict(),
                           rng=all_gather_objects(_rng_state(), self.group), world_size=self.group.world_size)
            if self.average is not None:
                payload["average"] = self.average.state_dict()
        return payload

    def save(self, name: str, state: TrainState, history: list[dict]) -> bool:
        """Write ``name`` (``LAST`` in full); every rank calls it, and it returns True where it wrote."""
        payload = self.payload(state, history, full=name == LAST)
        if not self.group.is_main:
            return False
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        self.store.write_bytes(name, buffer.getvalue())
        return True

    def restore(self) -> tuple[TrainState, list[dict]] | None:
        """Load ``last.pt`` into the model, optimizer, scaler, schedule and RNGs; None if there is none.

        Returns the saved progress and history.
        """
        if not self.store.exists(LAST):
            return None
        payload = read_checkpoint(self.store, LAST)
        if payload["model_config"] != self.model.config.to_dict():
            raise ValueError(f"checkpoint {self.store.url_of(LAST)} was made for a different model config")
        self._check_same_data(payload.get("data"))
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.schedule.load_state_dict(payload["schedule"])
        if self.average is not None and "average" in payload:
            self.average.load_state_dict(payload["average"])
        rng_states = payload["rng"]
        if len(rng_states) == self.group.world_size:
            _set_rng_state(rng_states[self.group.rank])
        else:  # resumed with another process count: data position holds, dropout masks differ
            log.warning("checkpoint was written by %d processes, resuming with %d: RNG streams reseeded",
                        len(rng_states), self.group.world_size)
        return TrainState(**payload["state"]), list(payload["history"])

    def _check_same_data(self, saved: dict[str, str] | None) -> None:
        """Refuse to resume weights (and an epoch position) that belong to other data or vocabulary."""
        if saved is None or self.fingerprint is None:  # a checkpoint from before fingerprints
            return
        changed = [name for part, name in FINGERPRINT_PARTS.items()
                   if saved.get(part) != self.fingerprint.get(part)]
        if changed:
            raise ResumeMismatchError(
                f"cannot resume {self.store.url_of(LAST)}: the {' and the '.join(changed)} changed since it "
                f"was written; start a new run with another --run-id (or delete {self.store.url} to "
                "retrain this one from scratch)")

    def best_weights(self) -> dict[str, torch.Tensor] | None:
        """The weights in ``best.pt``; None when no evaluation has been saved as best."""
        return read_checkpoint(self.store, BEST)["model"] if self.store.exists(BEST) else None


def read_checkpoint(store: Store, name: str = "") -> dict:
    """Read checkpoint ``name`` from ``store`` (restricted unpickler: tensors and plain containers only)."""
    url, data = store.url_of(name), store.read_bytes(name)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise ValueError(f"checkpoint {url} is corrupt or not a s2s checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {url} has an unsupported format")
    return payload


def load_checkpoint(url: str, storage_options: dict | None = None) -> dict:
    """``read_checkpoint`` for a caller that holds one checkpoint's URL."""
    return read_checkpoint(Store(url, storage_options))


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
