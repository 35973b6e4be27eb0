"""An exponential moving average of the weights (Polyak averaging), the cheap form of checkpoint
averaging: one float32 copy of the parameters, updated after every optimizer step.

Why: under a fixed wall-clock budget training stops while the learning rate is still high, and the
last weights carry the noise of the last updates; their average over the last few hundred steps
usually decodes better. The trainer scores the average on the dev set at the end and keeps it as
``best`` only when it beats every evaluated checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Running average ``a ← a + (1 − d)(w − a)`` with ``d = min(decay, (1 + n) / (10 + n))``.

    The warm-up of ``d`` keeps the first updates from being averaged with the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight averaging decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.average = [p.detach().float().clone() for _, p in self._parameters(model)]

    def _parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        params = dict(model.named_parameters())
        return [(name, params[name]) for name in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        weights = [p.detach().float() for _, p in self._parameters(model)]
        torch._foreach_lerp_(self.average, weights, 1.0 - decay)

    def state_dict_for(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state dict with the averaged parameters in place of the current ones.

        By parameter identity, so every name of a tied parameter (embeddings, output layer) gets it.
        """
        by_id = {id(p): avg for (_, p), avg in zip(self._parameters(model), self.average, strict=True)}
        return {key: (by_id[id(value)].to(value.dtype) if id(value) in by_id else value.detach()).clone()
                for key, value in model.state_dict(keep_vars=True).items()}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "names": self.names, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names:
            raise ValueError("weight average was saved for other parameters")
        self.decay, self.updates = state["decay"], state["updates"]
        self.average = [t.float().to(a.device) for t, a in zip(state["average"], self.average, strict=True)]
