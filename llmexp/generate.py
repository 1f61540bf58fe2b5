"""Batched sampling with a KV cache: greedy or temperature / top-k / top-p, stop conditions.

Prompts of different lengths are left-padded; a key-padding mask and per-row positions keep
padding invisible, so each row decodes as if it were alone.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from llmexp.models import KVCache, Llama


@torch.no_grad()
def generate(
    model: Llama,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    stop_token_ids: Sequence[int] = (),
    should_stop: Optional[Callable[[list[int]], bool]] = None,
    generator: Optional[torch.Generator] = None,
    on_token: Optional[Callable[[int, int], None]] = None,
) -> list[list[int]]:
    """New tokens for each prompt (prompt excluded). A row ends at a stop token (kept), when
    `should_stop(new_tokens)` says so, or after `max_new_tokens`. temperature 0 is greedy.
    `on_token(row, token)` sees each token as it is chosen (streaming)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs non-empty prompts")
    device = next(model.parameters()).device
    batch, longest = len(prompts), max(len(p) for p in prompts)
    capacity = min(longest + max_new_tokens, model.shape.max_seq_len)
    if longest >= model.shape.max_seq_len:
        raise ValueError(f"prompt of {longest} tokens leaves no room in a {model.shape.max_seq_len}-token context")
    tokens = torch.zeros(batch, longest, dtype=torch.long, device=device)
    valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)  # which key slots are real
    for i, p in enumerate(prompts):
        tokens[i, longest - len(p):] = torch.tensor(list(p), device=device)
        valid[i, longest - len(p):longest] = True
    positions = (valid[:, :longest].long().cumsum(-1) - 1).clamp(min=0)
    # Prefill: causal, padding keys hidden; padding queries see themselves so no row is empty.
    causal = torch.ones(longest, longest, dtype=torch.bool, device=device).tril()
    mask = (causal & valid[:, None, None, :longest]) | torch.eye(longest, dtype=torch.bool, device=device)
    dtype = next(model.parameters()).dtype
    cache = KVCache.empty(model.shape, batch, capacity, device=device, dtype=dtype)
    logits = model(tokens, positions=positions, mask=mask, cache=cache)[:, -1]
    next_position = positions[:, -1] + 1

    outputs: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    stops = set(stop_token_ids)
    for step in range(capacity - longest):
        token = _sample(logits.float(), temperature, top_k, top_p, generator)
        for i in range(batch):
            if done[i]:
                continue
            outputs[i].append(int(token[i]))
            if on_token is not None:
                on_token(i, int(token[i]))
            if int(token[i]) in stops or (should_stop is not None and should_stop(outputs[i])):
                done[i] = True
        if bool(done.all()) or step == max_new_tokens - 1 or cache.length >= capacity:
            break
        valid[:, cache.length] = True
        step_mask = valid[:, None, None, : cache.length + 1]
        logits = model(token[:, None], positions=next_position[:, None], mask=step_mask, cache=cache)[:, -1]
        next_position = next_position + 1
    return outputs


def _sample(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
            generator: Optional[torch.Generator]) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
