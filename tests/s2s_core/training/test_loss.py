"""The training loss equals torch's label-smoothed cross-entropy, value and gradient."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from s2s_core.training.loss import smoothed_cross_entropy

PAD = 0


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_value_and_gradient_equal_torch_cross_entropy(smoothing, dtype):
    torch.manual_seed(0)
    logits = (torch.randn(13, 50) * 3).to(dtype)
    target = torch.randint(1, 50, (13,))
    target[[2, 7]] = PAD  # padding positions: no loss, no gradient

    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    loss = smoothed_cross_entropy(ours, target, smoothing, PAD)
    expected = F.cross_entropy(theirs.float(), target, ignore_index=PAD, label_smoothing=smoothing,
                               reduction="sum")
    (loss * 0.5).backward()
    (expected * 0.5).backward()
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    assert ours.grad.dtype == dtype
    tolerance = {} if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(ours.grad, theirs.grad, **tolerance)
    assert ours.grad[[2, 7]].abs().sum() == 0
