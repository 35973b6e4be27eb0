"""The decoder's stacked LSTM/GRU recurrence, one step at a time, built from ``nn.Linear`` projections.

Why not a one-step ``nn.LSTM`` call: with input feeding the decoder must run step by step, and a
one-step fused RNN call pays its set-up (and an equally heavy backward) at every step. Here the
embedding half of the first layer's input projection is one matrix product over all target positions
(``project_inputs``); a step then costs two small products and the gate arithmetic. Plain
``nn.Linear`` modules also let reduced-precision inference (bf16, int8) treat every decoder product
alike. Gate layouts and parameters match ``nn.LSTM``/``nn.GRU`` (old checkpoints load, see
``upgrade_rnn_state``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from s2s_core.model.step_linear import StepLinear

GATES = {"lstm": 4, "gru": 3}

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # [L, B, H], or (h, c) for LSTM


class StackedCell(nn.Module):
    """``layers`` LSTM/GRU cells; layer 0 reads an embedding ``[*, E]`` plus an optional feed ``[B, F]``."""

    def __init__(self, rnn_type: str, embed_dim: int, feed_dim: int, hidden: int, layers: int,
                 dropout: float):
        super().__init__()
        if rnn_type not in GATES:
            raise ValueError(f"rnn_type must be one of {sorted(GATES)}, got {rnn_type!r}")
        self.lstm = rnn_type == "lstm"
        self.hidden_size, self.layers, self.dropout = hidden, layers, dropout
        gates = GATES[rnn_type] * hidden
        # Layer 0's input projection, split: the embedding part for all steps at once, the feed per step.
        self.embed_proj = nn.Linear(embed_dim, gates)
        self.feed_proj = StepLinear(feed_dim, gates, bias=False) if feed_dim else None
        self.input_proj = nn.ModuleList(StepLinear(hidden, gates) for _ in range(layers - 1))
        self.hidden_proj = nn.ModuleList(StepLinear(hidden, gates) for _ in range(layers))

    def project_inputs(self, embedded: torch.Tensor) -> torch.Tensor:
        """Embedding part of layer 0's input projection, ``[..., E]`` → ``[..., G*H]``."""
        return self.embed_proj(embedded)

    def forward(self, projected: torch.Tensor, feed: torch.Tensor | None, hidden: Hidden
                ) -> tuple[torch.Tensor, Hidden]:
        """One step: ``projected [B, G*H]`` (from ``project_inputs``) → top output ``[B, H]``, new state."""
        h_all, c_all = hidden if self.lstm else (hidden, None)
        # Products may run in bf16 under autocast; the gate arithmetic stays float32, which is
        # both more accurate and faster on CPUs (bf16 element-wise kernels convert internally).
        x_proj = projected.float()
        if feed is not None and self.feed_proj is not None:
            x_proj = x_proj + self.feed_proj(feed).float()
        new_h, new_c = [], []
        for layer in range(self.layers):
            if layer > 0:
                below = F.dropout(new_h[-1], self.dropout, self.training)
                x_proj = self.input_proj[layer - 1](below).float()
            h_proj = self.hidden_proj[layer](h_all[layer]).float()
            if self.lstm:
                h, c = _lstm_gates(x_proj, h_proj, c_all[layer])
                new_c.append(c)
            else:
                h = _gru_gates(x_proj, h_proj, h_all[layer])
            new_h.append(h)
        h_stack = torch.stack(new_h)
        return new_h[-1], ((h_stack, torch.stack(new_c)) if self.lstm else h_stack)


def _lstm_gates(x_proj: torch.Tensor, h_proj: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.LSTM``'s cell: gates in the order input, forget, cell, output."""
    i, f, g, o = (x_proj + h_proj).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_gates(x_proj: torch.Tensor, h_proj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``nn.GRU``'s cell: reset, update, new; the reset gate scales the hidden part of "new" only."""
    x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
    h_r, h_z, h_n = h_proj.chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)


def upgrade_rnn_state(state_dict: dict, prefix: str, embed_dim: int, layers: int) -> None:
    """Rename an old ``nn.LSTM``/``nn.GRU`` decoder's parameters (``{prefix}rnn.*``) in place.

    Packages and checkpoints written before the decoder used ``StackedCell`` keep loading.
    """
    old = f"{prefix}rnn."
    if f"{old}weight_ih_l0" not in state_dict:
        return
    new = f"{prefix}cell."
    weight_ih0 = state_dict.pop(f"{old}weight_ih_l0")
    state_dict[f"{new}embed_proj.weight"] = weight_ih0[:, :embed_dim].contiguous()
    if weight_ih0.size(1) > embed_dim:
        state_dict[f"{new}feed_proj.weight"] = weight_ih0[:, embed_dim:].contiguous()
    state_dict[f"{new}embed_proj.bias"] = state_dict.pop(f"{old}bias_ih_l0")
    for layer in range(layers):
        if layer > 0:
            state_dict[f"{new}input_proj.{layer - 1}.weight"] = state_dict.pop(f"{old}weight_ih_l{layer}")
            state_dict[f"{new}input_proj.{layer - 1}.bias"] = state_dict.pop(f"{old}bias_ih_l{layer}")
        state_dict[f"{new}hidden_proj.{layer}.weight"] = state_dict.pop(f"{old}weight_hh_l{layer}")
        state_dict[f"{new}hidden_proj.{layer}.bias"] = state_dict.pop(f"{old}bias_hh_l{layer}")
