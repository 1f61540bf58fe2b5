"""parallelism.compile's pretraining loss (torch.compile'd cross-entropy, fused with the fp32 cast)
gives the eager loss and gradients: speed must never cost numerics."""
from __future__ import annotations

import pytest
import torch

from llmexp.stages.pretrain import compiled_next_token_loss, next_token_loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_loss_matches_the_eager_loss_and_gradient(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(2, 16, 64) * 3).to(dtype)
    targets = torch.randint(0, 64, (2, 16))
    eager_in = logits.clone().requires_grad_(True)
    fused_in = logits.clone().requires_grad_(True)
    eager, fused = next_token_loss(eager_in, targets), compiled_next_token_loss()(fused_in, targets)
    assert fused.dtype == eager.dtype == torch.float32
    torch.testing.assert_close(fused, eager, rtol=1e-6, atol=1e-6)
    eager.backward(), fused.backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # gradients are rounded to bf16 either way
    torch.testing.assert_close(fused_in.grad.float(), eager_in.grad.float(), rtol=tol, atol=tol)
