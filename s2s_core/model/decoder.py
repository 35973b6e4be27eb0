"""Attentional LSTM/GRU decoder with input feeding (Luong et al., 2015), started from the encoder summary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s2s_core.model.attention import Attention
from s2s_core.model.cell import StackedCell, upgrade_rnn_state
from s2s_core.model.encoder import EncoderOutput
from s2s_core.model.step_linear import StepLinear, deferred_weight_grads


@dataclass
class DecoderState:
    """Recurrent state ``[L, B, H]`` (a pair for LSTM) and the input-feed vector ``[B, H]``."""

    hidden: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    input_feed: torch.Tensor | None

    def index_select(self, index: torch.Tensor) -> DecoderState:
        if isinstance(self.hidden, tuple):
            hidden = tuple(h.index_select(1, index) for h in self.hidden)
        else:
            hidden = self.hidden.index_select(1, index)
        feed = None if self.input_feed is None else self.input_feed.index_select(0, index)
        return DecoderState(hidden, feed)


class Bridge(nn.Module):
    """Maps the encoder's final summary to the decoder's initial state (or zeros)."""

    def __init__(self, kind: str, enc_dim: int, dec_hidden: int, dec_layers: int, lstm: bool):
        super().__init__()
        if kind not in ("linear", "zero"):
            raise ValueError(f"bridge must be 'linear' or 'zero', got {kind!r}")
        self.kind, self.dec_hidden, self.dec_layers, self.lstm = kind, dec_hidden, dec_layers, lstm
        if kind == "linear":
            self.hidden = nn.Linear(enc_dim, dec_hidden * dec_layers)
            self.cell = nn.Linear(enc_dim, dec_hidden * dec_layers) if lstm else None

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L*H]`` → ``[L, B, H]`` (contiguous, as cuDNN wants)."""
        return x.view(x.size(0), self.dec_layers, self.dec_hidden).transpose(0, 1).contiguous()

    def forward(self, enc: EncoderOutput) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        batch = enc.final.size(0)
        if self.kind == "zero":
            zeros = enc.final.new_zeros(self.dec_layers, batch, self.dec_hidden)
            return (zeros, zeros.clone()) if self.lstm else zeros
        hidden = self._layers(torch.tanh(self.hidden(enc.final).float()))
        if not self.lstm:
            return hidden
        cell_source = enc.final_cell if enc.final_cell is not None else enc.final
        return hidden, self._layers(self.cell(cell_source).float())


class Decoder(nn.Module):
    """Target RNN whose output attends over the encoder states; teacher-forced (``forward``) or stepwise."""

    def __init__(self, embedding: nn.Embedding, rnn_type: str, hidden: int, layers: int,
                 enc_dim: int, attention: str, attention_hidden: int | None, dropout: float,
                 input_feeding: bool, bridge: str):
        super().__init__()
        self.embedding = embedding
        self.input_feeding = input_feeding
        self.hidden_size = hidden
        self.cell = StackedCell(rnn_type, embedding.embedding_dim, hidden if input_feeding else 0, hidden,
                                layers, dropout)
        self.bridge = Bridge(bridge, enc_dim, hidden, layers, lstm=rnn_type == "lstm")
        self.attention = Attention(attention, hidden, enc_dim, attention_hidden)
        self.combine = StepLinear(hidden + enc_dim, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self._register_load_state_dict_pre_hook(self._upgrade_old_rnn)

    def _upgrade_old_rnn(self, state_dict: dict, prefix: str, *_) -> None:
        upgrade_rnn_state(state_dict, prefix, self.embedding.embedding_dim, self.cell.layers)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        if enc.projected_keys is None:
            enc.projected_keys = self.attention.project_keys(enc.states)
        feed = enc.final.new_zeros(enc.final.size(0), self.hidden_size) if self.input_feeding else None
        return DecoderState(self.bridge(enc), feed)

    def _attend(self, rnn_out: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """RNN outputs ``[B, T, H]`` → attentional states ``[B, T, H]`` and weights ``[B, T, S]``."""
        context, weights = self.attention(rnn_out, enc.states, enc.mask, enc.projected_keys)  # [B, T, De]
        attentional = torch.tanh(self.combine(torch.cat([rnn_out, context], dim=-1)).float())
        return self.dropout(attentional), weights

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput, state: DecoderState
                ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """Teacher-forced decoding of ``tgt_in [B, T]``.

        Returns attentional hidden states ``[B, T, H]``, attention weights ``[B, T, S]`` and the
        final state.
        """
        projected = self.cell.project_inputs(self.dropout(self.embedding(tgt_in)))  # [B, T, G*H]
        with deferred_weight_grads([self.cell, self.attention, self.combine]):
            return self._teacher_forced(projected, enc, state)

    def _teacher_forced(self, projected: torch.Tensor, enc: EncoderOutput, state: DecoderState
                        ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        if not self.input_feeding:
            # The recurrence does not depend on attention: attend over all steps at once afterwards.
            rnn_out, hidden = [], state.hidden
            for step_input in projected.unbind(1):
                out, hidden = self.cell(step_input, None, hidden)
                rnn_out.append(out)
            attentional, weights = self._attend(torch.stack(rnn_out, 1), enc)
            return attentional, weights, DecoderState(hidden, None)
        outputs, all_weights = [], []
        # unbind, not projected[:, t]: each slice's backward would write a zero-filled [B, T, G*H].
        for step_input in projected.unbind(1):
            attentional, weights, state = self._step(step_input, enc, state)
            outputs.append(attentional)
            all_weights.append(weights)
        return torch.stack(outputs, 1), torch.stack(all_weights, 1), state

    def step(self, embedded: torch.Tensor, enc: EncoderOutput, state: DecoderState
             ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """One step from an embedded input ``[B, E]``: attentional hidden ``[B, H]``, weights ``[B, S]``."""
        return self._step(self.cell.project_inputs(embedded), enc, state)

    def _step(self, projected: torch.Tensor, enc: EncoderOutput, state: DecoderState
              ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        rnn_out, hidden = self.cell(projected, state.input_feed, state.hidden)
        attentional, weights = self._attend(rnn_out.unsqueeze(1), enc)
        attentional, weights = attentional.squeeze(1), weights.squeeze(1)
        return attentional, weights, DecoderState(hidden, attentional if self.input_feeding else None)
