"""The step-wise decoder cell computes what ``nn.LSTM``/``nn.GRU`` compute, and old decoders still load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s_core.model.cell import StackedCell, upgrade_rnn_state
from s2s_core.model.seq2seq import ModelConfig, build_model

EMBED, FEED, HIDDEN, BATCH, STEPS = 6, 5, 7, 3, 4


def cell_from_rnn(rnn: nn.Module, rnn_type: str, layers: int) -> StackedCell:
    cell = StackedCell(rnn_type, EMBED, FEED, HIDDEN, layers, dropout=0.0)
    state = {f"rnn.{k}": v.clone() for k, v in rnn.state_dict().items()}
    upgrade_rnn_state(state, "", EMBED, layers)
    cell.load_state_dict({k.removeprefix("cell."): v for k, v in state.items()})
    return cell.eval()


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_the_cell_steps_like_the_fused_rnn(rnn_type, layers):
    torch.manual_seed(0)
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn_type](EMBED + FEED, HIDDEN, num_layers=layers,
                                                    batch_first=True).eval()
    cell = cell_from_rnn(rnn, rnn_type, layers)
    embedded, feeds = torch.randn(BATCH, STEPS, EMBED), torch.randn(BATCH, STEPS, FEED)
    h0 = torch.randn(layers, BATCH, HIDDEN)
    hidden_rnn = (h0, torch.randn_like(h0)) if rnn_type == "lstm" else h0
    hidden_cell = hidden_rnn
    projected = cell.project_inputs(embedded)
    for t in range(STEPS):
        out_rnn, hidden_rnn = rnn(torch.cat([embedded[:, t], feeds[:, t]], -1).unsqueeze(1), hidden_rnn)
        out_cell, hidden_cell = cell(projected[:, t], feeds[:, t], hidden_cell)
        torch.testing.assert_close(out_cell, out_rnn.squeeze(1))
        for a, b in zip(hidden_cell if rnn_type == "lstm" else [hidden_cell],
                        hidden_rnn if rnn_type == "lstm" else [hidden_rnn], strict=True):
            torch.testing.assert_close(a, b)


def test_a_decoder_saved_with_the_fused_rnn_loads_and_decodes_the_same():
    torch.manual_seed(1)
    config = ModelConfig(src_vocab_size=20, tgt_vocab_size=20, emb_dim=6, enc_hidden=4, dec_hidden=8,
                         dec_layers=2, dropout=0.0)
    model = build_model(config).eval()
    # The same weights in the old layout: nn.LSTM's names, input and feed halves side by side.
    old = dict(model.state_dict())
    cell = "decoder.cell."
    old["decoder.rnn.weight_ih_l0"] = torch.cat([old.pop(cell + "embed_proj.weight"),
                                                 old.pop(cell + "feed_proj.weight")], 1)
    old["decoder.rnn.bias_ih_l0"] = old.pop(cell + "embed_proj.bias")
    old["decoder.rnn.weight_ih_l1"] = old.pop(cell + "input_proj.0.weight")
    old["decoder.rnn.bias_ih_l1"] = old.pop(cell + "input_proj.0.bias")
    for layer in range(2):
        old[f"decoder.rnn.weight_hh_l{layer}"] = old.pop(cell + f"hidden_proj.{layer}.weight")
        old[f"decoder.rnn.bias_hh_l{layer}"] = old.pop(cell + f"hidden_proj.{layer}.bias")
    loaded = build_model(config).eval()
    loaded.load_state_dict(old)
    src, lengths = torch.tensor([[5, 6, 7, 2]]), torch.tensor([4])
    tgt = torch.tensor([[1, 8, 9]])
    torch.testing.assert_close(loaded(src, lengths, tgt), model(src, lengths, tgt), rtol=0, atol=0)
