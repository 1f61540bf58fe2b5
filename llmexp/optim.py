"""The update rule (AdamW, SGD with momentum, Adafactor; all torch.optim) with weight decay on
matrices only, and the learning-rate schedules."""
from __future__ import annotations

import math

import torch
from torch import nn

from llmexp.config.schema import OptimizerConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay 2-D weight matrices; never norms, biases or embedding tables (tied output too)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device_type: str) -> torch.optim.Optimizer:
    """`device_type` "cuda"/"cpu" allows fused kernels (when cfg.fused is null); anything else not."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adafactor":  # decoupled, lr-scaled weight decay as in AdamW; no fused kernel
        return torch.optim.Adafactor(groups, lr=cfg.lr)
    fused = cfg.fused if cfg.fused is not None else device_type in ("cuda", "cpu")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def lr_multiplier(step: int, total_steps: int, cfg: OptimizerConfig) -> float:
    """Factor on cfg.lr at optimizer step `step` (0-based): linear warmup, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        decay_steps = max(1, round(cfg.decay_fraction * total_steps))
        decay_start = max(cfg.warmup_steps, total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        return 1.0 - (1.0 - floor) * progress
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine
