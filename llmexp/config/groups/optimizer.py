"""optimizer group: the optimizer and its learning-rate schedule (llmexp/optim.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from llmexp.config.checks import choice, finite, in_range, positive, require


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # the conf/optimizer/ option this came from
    lr: float = 3e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # applied to matrices only: never to norms, biases, embeddings
    fused: Optional[bool] = None  # None: fused kernels where the device supports them
    grad_clip: Optional[float] = 1.0
    schedule: str = choice(Literal["cosine", "linear", "constant", "wsd"], "cosine")
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr (cosine, linear, wsd)
    decay_fraction: float = 0.2  # wsd: fraction of the steps spent decaying


def check_optimizer(o: OptimizerConfig) -> None:
    positive("optimizer.lr", o.lr)
    require(
        len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas), "optimizer.betas", o.betas,
        "two values in [0, 1)",
    )
    positive("optimizer.eps", o.eps)
    finite("optimizer.weight_decay", o.weight_decay)
    require(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
    positive("optimizer.grad_clip", o.grad_clip, optional=True)
    require(o.warmup_steps >= 0, "optimizer.warmup_steps", o.warmup_steps, "must be >= 0")
    in_range("optimizer.min_lr_ratio", o.min_lr_ratio, 0.0, 1.0)
    in_range("optimizer.decay_fraction", o.decay_fraction, 0.0, 1.0, low_open=True)
