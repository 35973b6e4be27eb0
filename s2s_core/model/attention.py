"""Attention over encoder states, which the decoder uses at every step to build its context.

Scorers: dot, general (Luong), additive (Bahdanau) and cosine.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from s2s_core.model.step_linear import StepLinear

SCORERS = ("dot", "general", "additive", "cosine")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``scores [B, T, S]`` over real positions ``mask [B, S]``; padding gets exactly 0."""
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    # Normalise in float32: under autocast the scores may be half precision.
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)


class Attention(nn.Module):
    """Scores decoder queries against encoder keys and returns the weighted context.

    Shapes: queries ``[B, T, Dq]`` (T = 1 while decoding step by step), keys ``[B, S, Dk]``, mask
    ``[B, S]`` (True on real positions).
    """

    def __init__(self, kind: str, query_dim: int, key_dim: int, hidden_dim: int | None = None):
        super().__init__()
        if kind not in SCORERS:
            raise ValueError(f"attention must be one of {SCORERS}, got {kind!r}")
        if kind == "dot" and query_dim != key_dim:
            raise ValueError(
                f"dot attention needs equal query and key sizes, got {query_dim} and {key_dim}; "
                "use 'general' or make the decoder size match the encoder output size")
        self.kind = kind
        hidden_dim = hidden_dim or query_dim
        if kind in ("general", "cosine"):
            # Keys are projected into query space once per sentence (see ``project_keys``).
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
        if kind == "additive":
            self.key_proj = nn.Linear(key_dim, hidden_dim, bias=False)
            self.query_proj = StepLinear(query_dim, hidden_dim, bias=True)  # once per decoder step
            self.v = nn.Linear(hidden_dim, 1, bias=False)
        if kind == "cosine":
            # Cosine scores live in [-1, 1]: a learned inverse temperature lets the
            # distribution become peaked (initialised sharp enough to be useful).
            self.scale = nn.Parameter(torch.tensor(10.0))

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Per-sentence precomputation ``[B, S, Dq or H]`` (float32) reused at every decoder step."""
        if self.kind == "dot":
            return keys.float()
        projected = self.key_proj(keys).float()
        if self.kind == "cosine":
            projected = F.normalize(projected, dim=-1)
        return projected

    def score(self, query: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores ``[B, T, S]``."""
        if self.kind == "additive":
            # [B, 1, S, H] + [B, T, 1, H] → [B, T, S, H]
            hidden = torch.tanh(projected_keys.unsqueeze(1) + self.query_proj(query).unsqueeze(2))
            return self.v(hidden).squeeze(-1)
        if self.kind == "cosine":
            query = F.normalize(query, dim=-1)
            return self.scale * torch.bmm(query, projected_keys.transpose(1, 2))
        return torch.bmm(query, projected_keys.transpose(1, 2))

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context ``[B, T, Dk]`` and weights ``[B, T, S]`` (sum to 1 over real positions, 0 on padding)."""
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        # Float32 with autocast off: per decoder step these are small products and element-wise
        # work over [B, S, H], where bf16 costs a cast of the keys per step and slower CPU kernels.
        with torch.autocast(query.device.type, enabled=False):
            weights = masked_softmax(self.score(query.float(), projected_keys), mask)
            context = torch.bmm(weights, keys.float())  # [B, T, Dk]
        return context, weights
