"""Weight averaging: the running average it keeps, and what it hands to decoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s_core.model.seq2seq import ModelConfig, build_model
from s2s_core.training.averaging import WeightAverage


def test_the_average_follows_the_warmed_up_decay():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    expected = 0.0
    for n, value in enumerate([4.0, 8.0, 2.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer)
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * value
        assert average.average[0][0, 0].item() == pytest.approx(expected)


def test_tied_parameters_get_the_average_under_every_name():
    torch.manual_seed(0)
    model = build_model(ModelConfig(src_vocab_size=20, tgt_vocab_size=20, emb_dim=8, enc_hidden=4,
                                    dec_hidden=8, tie_embeddings=True, share_embeddings=True))
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model)
    state = average.state_dict_for(model)
    assert torch.equal(state["generator.weight"], state["decoder.embedding.weight"])
    assert torch.equal(state["generator.weight"], state["encoder.embedding.weight"])
    assert not torch.equal(state["generator.weight"], model.generator.weight)  # averaged, not live
    fresh = build_model(model.config)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.generator.weight, state["generator.weight"])
