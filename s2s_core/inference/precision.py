"""Inference precision: how a float32 model computes while it translates (fp32, bf16 or int8).

``fp32``  the model as trained (the default). On CUDA the older ``amp`` setting still applies to it
          (``auto``: bf16 or fp16 autocast, as before this option existed; ``none``: float32).
``bf16``  autocast to bfloat16 on every device (on CUDA: AMP bf16): matrix products (``nn.Linear``,
          ``bmm``, the encoder LSTM) run in bfloat16; the model keeps its float32 weights and does its
          element-wise recurrence, softmaxes and log-probabilities in float32 (``s2s_core.model``).
``int8``  a copy of the model whose ``nn.Linear`` weights are int8, one scale per output channel
          (torchao ``Int8WeightOnlyConfig``); activations stay float32 and the embeddings keep their
          float tables (the output layer, tied to the target embedding, is untied first).

Batch invariance: fp32 and int8 give a sentence the same hypotheses alone or in any batch (kernels
that change with the batch shape only move float32 round-off, ~1e-6 in a score). bf16 does not, on
CPUs whose oneDNN picks other bf16 kernels for other batch shapes (AMX): rounding to bfloat16 turns
that round-off into differences of a bfloat16 step, and ~5% of sentences of a real model get another
(equally good) translation when batched differently. AMX is also where bf16's speed comes from: the
batch-invariant bf16 we measured (no AMX, step-wise encoder, bf16 attention) was slower than fp32.
int8 with quantized activations (per token, torchao ``Int8DynamicActivationInt8WeightConfig``) has
the same problem for the same reason, and a per-tensor activation scale (torch's deprecated
``quantize_dynamic``) would make every row depend on the others by construction: hence weight-only
int8. Measurements: README, "Performance", "Precision".
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

import torch
from torch import nn

from s2s_core.device import amp_dtype

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_PRECISION = "fp32"
# What an int8 model's weights are, as pinned in a corpus plan's numerics (``quantization``): another
# scheme gives other translations, so it gets another name.
INT8_SCHEME = "int8-weight-only-per-channel"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def autocast_dtype(precision: str, device: torch.device, amp: str = "none") -> torch.dtype | None:
    """The dtype decoding autocasts to (None: no autocast): bf16 → bfloat16 on every device; fp32 →
    what ``amp`` says (CUDA only, as before ``precision`` existed); int8 → none."""
    check_precision(precision)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "int8":
        return None
    return amp_dtype(amp, device)


def quantization(precision: str) -> str:
    """How the weights are quantized for ``precision`` ("none" unless int8)."""
    return INT8_SCHEME if check_precision(precision) == "int8" else "none"


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model to decode with at ``precision``: ``model`` itself for fp32 and bf16 (autocast needs no
    change to it), an int8-quantized copy for int8 (``model`` is left as it is)."""
    if check_precision(precision) != "int8":
        return model
    quantize_, config = _torchao_int8()
    quantized = copy.deepcopy(model).eval()
    untie_linear_weights(quantized)
    quantize_(quantized, config)
    return quantized


def untie_linear_weights(model: nn.Module) -> None:
    """Give every ``nn.Linear`` whose weight is shared with another module (the output layer tied to
    the target embedding) its own copy, so quantizing it leaves the embedding a float table."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    for module in model.modules():
        if isinstance(module, nn.Linear) and owners.get(id(module.weight), 0) > 1:
            module.weight = nn.Parameter(module.weight.detach().clone(), requires_grad=False)


def _torchao_int8() -> tuple:
    """torchao's ``quantize_`` and the int8 config, imported on first use (torchao is only needed for
    int8; importing it takes a second)."""
    with _quiet_import():
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    return quantize_, Int8WeightOnlyConfig()


# The warnings a CPU-only torch always gets when torchao loads, by logger: its CUDA kernels cannot load
# (``Failed to load .../_C_cutlass_90a.abi3.so``), there is no Triton (its GPU int8 matmul), and a
# torch deprecation note about torchao's enums. None concerns int8 on CPU; any other warning passes
# (with CUDA, failing kernels are kept: they may matter there).
_EXPECTED = {"torchao": ("Failed to load",), "torchao.kernel.intmm": ("Warning: Detected no triton",),
             "torch.utils._pytree": ("Enum subclass",)}


class _DropExpected(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    expected = _EXPECTED if not torch.cuda.is_available() else {"torch.utils._pytree": ("Enum subclass",)}
    filters = [(logging.getLogger(name), _DropExpected(fragments)) for name, fragments in expected.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
