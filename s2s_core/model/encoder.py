"""Bidirectional, stacked LSTM/GRU encoder over padded source batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class EncoderOutput:
    """Encoder states ``[B, S, De]``, their mask ``[B, S]`` and the final summary ``[B, De]``."""

    states: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor
    final_cell: torch.Tensor | None = None  # LSTM cell summary ``[B, De]``
    projected_keys: torch.Tensor | None = None  # filled in by the model's attention

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` (used to expand or reorder beams)."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        return EncoderOutput(pick(self.states), pick(self.mask), pick(self.final),
                             pick(self.final_cell), pick(self.projected_keys))


class Encoder(nn.Module):
    """Embeds source ids and runs a (bidirectional) RNN over them; output size ``dirs * hidden``."""

    def __init__(self, embedding: nn.Embedding, rnn_type: str, hidden: int, layers: int,
                 bidirectional: bool, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_TYPES[rnn_type](
            embedding.embedding_dim, hidden, num_layers=layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self.output_dim = hidden * self.directions

    def _last_layer(self, state: torch.Tensor) -> torch.Tensor:
        """``[layers*dirs, B, H]`` → top layer with directions concatenated ``[B, dirs*H]``."""
        state = state.view(self.layers, self.directions, state.size(1), state.size(2))[-1]
        return torch.cat(list(state), dim=-1)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """``src [B, S]`` padded token ids, ``lengths [B]`` (each ≥ 1)."""
        embedded = self.dropout(self.embedding(src))
        # Packing keeps padding out of both directions: a sentence's states do not depend on
        # how much padding its batch needed (batch invariance).
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        packed_out, state = self.rnn(packed)
        states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        if isinstance(state, tuple):
            return EncoderOutput(self.dropout(states), mask, self._last_layer(state[0]),
                                 self._last_layer(state[1]))
        return EncoderOutput(self.dropout(states), mask, self._last_layer(state))
