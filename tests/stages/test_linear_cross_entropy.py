"""The chunked projection + cross-entropy equals nn.Linear + F.cross_entropy, values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from llmexp.data.chat import IGNORE as IGNORE_INDEX
from llmexp.stages.linear_cross_entropy import chunk_rows, linear_cross_entropy


def _both(dtype, ignore: bool, n_tokens: int = 301, d_model: int = 32, vocab: int = 200):
    torch.manual_seed(0)
    hidden = torch.randn(3, n_tokens // 3, d_model, requires_grad=True)
    weight = (torch.randn(vocab, d_model) * 0.2).requires_grad_()
    targets = torch.randint(0, vocab, (3, n_tokens // 3))
    if ignore:
        targets[:, ::4] = IGNORE_INDEX
    results = []
    for loss_of in (lambda: linear_cross_entropy(hidden, weight, targets),
                    lambda: F.cross_entropy(F.linear(hidden, weight).float().flatten(0, 1), targets.flatten())):
        hidden.grad = weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = loss_of()
        (loss * 1.7).backward()  # the incoming gradient scales both
        results.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
    return results


@pytest.mark.parametrize("ignore", [False, True])
def test_fp32_equals_linear_then_cross_entropy(ignore):
    (loss, dh, dw), (ref, ref_dh, ref_dw) = _both(torch.float32, ignore)
    assert abs(loss - ref) < 1e-5
    assert (dh - ref_dh).abs().max() < 1e-6 and (dw - ref_dw).abs().max() < 1e-6


def test_bf16_autocast_matches_within_bf16_rounding():
    (loss, dh, dw), (ref, ref_dh, ref_dw) = _both(torch.bfloat16, ignore=False)
    assert abs(loss - ref) < 1e-2
    assert (dh - ref_dh).abs().max() < 2e-2 * ref_dh.abs().max()
    assert (dw - ref_dw).abs().max() < 2e-2 * ref_dw.abs().max()


def test_chunks_hold_about_the_hidden_states_size_in_logits():
    assert chunk_rows(2048, 256, 4096) == 128  # vocab / d_model = 16 chunks
    assert chunk_rows(2048, 4096, 128256) == 64
    assert chunk_rows(5, 4096, 1000) == 8 and chunk_rows(1, 8, 8) == 1
