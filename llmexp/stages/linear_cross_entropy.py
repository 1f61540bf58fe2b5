"""Cross-entropy of a linear output layer, computed chunk by chunk: the (tokens, vocab) logits never exist.

The output projection and the loss are one autograd node. Its forward walks the tokens in chunks:
logits of the chunk (in the autocast dtype, as nn.Linear would give them), log-sum-exp and the
target logit in fp32, then at once the chunk's gradient (softmax - one-hot) / n and its two
products, d hidden = g @ W and d W += g^T @ h. Backward only scales those by the incoming
gradient. This is the scheme of Liger-Kernel's FusedLinearCrossEntropy (and of Apple's
Cut Cross-Entropy); both are Triton, GPU-only, so the torch version here serves every device.

Against nn.Linear + F.cross_entropy the full logits, their fp32 copy and the log-softmax gradient
are never written and read back. On a 2-core CPU the tiny Llama of scripts/bench_litgpt.py (2048
tokens a step, d 256, vocab 4096) trains 10% faster in fp32 (4778 -> 5257 tokens/s) and 38% in
bf16-mixed (8813 -> 12211), median of 3 alternating runs, with the same loss values.
"""
from __future__ import annotations

import math

import torch

from llmexp.data.chat import IGNORE as IGNORE_INDEX  # targets with this value add nothing to the loss


def chunk_rows(n_tokens: int, d_model: int, vocab: int) -> int:
    """Liger's heuristic: a chunk of logits about as large as the hidden states (vocab/d_model
    chunks), rows a power of two, at least 1."""
    chunks = math.ceil(vocab / d_model)
    return max(1, 2 ** math.ceil(math.log2(max(1, math.ceil(n_tokens / chunks)))))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype,
                rows: int) -> torch.Tensor:
        h, w = hidden.to(dtype), weight.to(dtype)
        n = (targets != IGNORE_INDEX).sum().clamp(min=1)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, h.shape[0], rows):
            hs, ts = h[start : start + rows], targets[start : start + rows]
            weight_of_row = (ts != IGNORE_INDEX) / n  # each kept token's share of the mean
            safe = ts.clamp(min=0)
            logits = (hs @ w.t()).float()
            target_logit = logits.gather(1, safe[:, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            probs = logits.sub_(top).exp_()  # in place: the chunk's logits are not needed again
            total = probs.sum(dim=-1)
            loss += ((top.squeeze(1) + total.log() - target_logit) * weight_of_row).sum()
            grad = probs.mul_((weight_of_row / total)[:, None])  # softmax, weighted
            grad[torch.arange(len(ts), device=ts.device), safe] -= weight_of_row  # minus the one-hot
            grad = grad.to(dtype)
            grad_hidden[start : start + rows] = grad @ w
            if dtype == grad_weight.dtype:
                grad_weight.addmm_(grad.t(), hs)
            else:  # bf16 products, summed over the chunks in fp32
                grad_weight += (grad.t() @ hs).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets` (tokens whose target is
    IGNORE_INDEX left out), equal to F.cross_entropy(F.linear(hidden, weight).float(), targets) up to
    fp32 rounding, values and gradients. `hidden` (..., d_model), `targets` (...). The matmuls run
    in the autocast dtype when autocast is on (as nn.Linear's would), the softmax in fp32."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    rows = chunk_rows(flat.shape[0], weight.shape[1], weight.shape[0])
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(flat, weight, flat_targets, dtype, rows)
