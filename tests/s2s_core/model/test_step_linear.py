"""Deferred weight gradients equal the per-step ones, in float32 and under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from s2s_core.model.seq2seq import ModelConfig, build_model
from s2s_core.model.step_linear import StepLinear, deferred_weight_grads


def step_grads(layer: StepLinear, inputs: list[torch.Tensor], deferred: bool, amp: bool):
    layer.zero_grad()
    xs = [x.clone().requires_grad_() for x in inputs]
    deferring = deferred_weight_grads([layer]) if deferred else torch.enable_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), deferring:
        h = torch.zeros(inputs[0].shape[:-1] + (layer.out_features,))
        for x in xs:  # a recurrence: each step's output feeds the next one's input
            h = torch.tanh(layer(x + h[..., : x.size(-1)]))
    (h.float() ** 2).sum().backward()
    bias = None if layer.bias is None else layer.bias.grad.clone()
    return layer.weight.grad.clone(), bias, [x.grad for x in xs]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("amp", [False, True])
def test_deferred_weight_gradients_equal_per_step_ones(bias, amp):
    torch.manual_seed(0)
    layer = StepLinear(6, 8, bias=bias)
    inputs = [torch.randn(3, 2, 6) for _ in range(5)]
    expected, got = step_grads(layer, inputs, False, amp), step_grads(layer, inputs, True, amp)
    tolerance = dict(atol=3e-2, rtol=3e-2) if amp else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], expected[0], **tolerance)
    if bias:
        torch.testing.assert_close(got[1], expected[1], **tolerance)
    for a, b in zip(got[2], expected[2], strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    assert layer.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_the_decoder_trains_with_the_same_gradients_as_plain_per_step_layers(input_feeding, rnn_type):
    torch.manual_seed(1)
    model = build_model(ModelConfig(src_vocab_size=30, tgt_vocab_size=30, emb_dim=8, enc_hidden=6,
                                    dec_hidden=10, dec_layers=2, rnn_type=rnn_type, dropout=0.0,
                                    input_feeding=input_feeding))
    src, lengths = torch.randint(4, 30, (4, 7)), torch.tensor([7, 5, 3, 6])
    tgt_in = torch.randint(4, 30, (4, 6))

    def gradients(deferred: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        enc = model.encode(src, lengths)
        projected = model.decoder.cell.project_inputs(model.decoder.embedding(tgt_in))
        state = model.init_state(enc)
        if deferred:
            attentional, _, _ = model.decoder(tgt_in, enc, state)
        else:  # the same loop outside deferred_weight_grads: ordinary per-step weight gradients
            attentional, _, _ = model.decoder._teacher_forced(projected, enc, state)
        model.logits(attentional).logsumexp(-1).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain, deferred = gradients(False), gradients(True)
    assert plain.keys() == deferred.keys()
    assert any("hidden_proj" in name for name in deferred)
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
