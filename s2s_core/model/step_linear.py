"""``StepLinear``: a linear layer applied once per decoder step whose weight gradient is computed once.

Why: with input feeding the decoder's products run step by step, and a plain ``nn.Linear`` there makes
backward compute a small weight gradient at every step (a product whose inner size is only the batch)
and add it into the parameter's gradient: as many full-size additions (and, under autocast, copies
back to float32) as there are target positions. Inside ``deferred_weight_grads`` each step only
computes the gradient of its input; the steps' inputs and output gradients are kept, and the weight's
gradient is one product over all steps, ``G^T X``. Same result up to summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F


class _Sink:
    """What the steps of one sequence hand to the weight-gradient node: inputs and output gradients."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []


class _SequenceWeights(torch.autograd.Function):
    """Casts the weights once per sequence; its backward computes their gradient from the sink."""

    @staticmethod
    def forward(ctx, sink: _Sink, dtype: torch.dtype, weight: torch.Tensor, bias: torch.Tensor | None):
        ctx.sink, ctx.weight_dtype, ctx.has_bias = sink, weight.dtype, bias is not None
        cast_bias = bias.to(dtype, copy=True) if bias is not None else weight.new_empty(0, dtype=dtype)
        return weight.to(dtype, copy=True), cast_bias

    @staticmethod
    def backward(ctx, _grad_weight: torch.Tensor, _grad_bias: torch.Tensor):
        sink = ctx.sink
        if not sink.grads:
            return None, None, None, None
        grads, inputs = torch.cat(sink.grads), torch.cat(sink.inputs)  # [N, out], [N, in]
        sink.grads, sink.inputs = [], []
        grad_weight = (grads.t() @ inputs).to(ctx.weight_dtype)
        grad_bias = grads.sum(0, dtype=torch.float32).to(ctx.weight_dtype) if ctx.has_bias else None
        return None, None, grad_weight, grad_bias


class _StepProduct(torch.autograd.Function):
    """``x W^T + b`` for one step; backward returns the input's gradient, the weight's goes to the sink."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sink: _Sink):
        ctx.sink = sink
        ctx.save_for_backward(x, weight)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x, weight, bias if bias.numel() else None)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.to(weight.dtype)
        ctx.sink.inputs.append(x.reshape(-1, x.size(-1)))
        ctx.sink.grads.append(grad.reshape(-1, grad.size(-1)))
        return grad @ weight, None, None, None


class StepLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state dict) that defers its weight gradient when asked."""

    _sequence: tuple[_Sink, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._sequence is None:
            return super().forward(x)
        sink, weight, bias = self._sequence
        return _StepProduct.apply(x.to(weight.dtype), weight, bias, sink)

    def _begin_sequence(self) -> None:
        device = self.weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.weight.dtype
        sink = _Sink()
        weight, bias = _SequenceWeights.apply(sink, dtype, self.weight, self.bias)
        self._sequence = (sink, weight, bias)


@contextlib.contextmanager
def deferred_weight_grads(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Within the block, every ``StepLinear`` in ``modules`` defers its weight gradient (training only)."""
    layers = [m for module in modules for m in module.modules() if isinstance(m, StepLinear)]
    if not torch.is_grad_enabled() or not any(layer.weight.requires_grad for layer in layers):
        yield
        return
    for layer in layers:
        layer._begin_sequence()
    try:
        yield
    finally:
        for layer in layers:
            layer._sequence = None
