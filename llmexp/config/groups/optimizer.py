"""optimizer group: the optimizer and its learning-rate schedule (llmexp/optim.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from llmexp.config.checks import choice, finite, in_range, positive, require


@dataclass
class OptimizerConfig:
    """The update rule (torch.optim) and its learning-rate schedule (llmexp/optim.py)."""

    # adamw | sgd (with momentum) | adafactor (Shazeer & Stern 2018, torch.optim)
    name: str = choice(Literal["adamw", "sgd", "adafactor"], "adamw")
    lr: float = 3e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])  # adamw only
    eps: float = 1e-8  # adamw only
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.1  # applied to matrices only: never to norms, biases, embeddings
    fused: Optional[bool] = None  # adamw, sgd: None: fused kernels where the device supports them
    grad_clip: Optional[float] = 1.0
    schedule: str = choice(Literal["cosine", "linear", "constant", "wsd"], "cosine")
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr (cosine, linear, wsd)
    decay_fraction: float = 0.2  # wsd: fraction of the steps spent decaying


# Keys one update rule reads and the others would ignore: set away from their default, refused.
OPTIMIZER_ONLY = {"betas": ("adamw",), "eps": ("adamw",), "momentum": ("sgd",), "nesterov": ("sgd",),
                  "fused": ("adamw", "sgd")}


def check_optimizer(o: OptimizerConfig) -> None:
    defaults = OptimizerConfig()
    for key, users in OPTIMIZER_ONLY.items():
        require(o.name in users or getattr(o, key) == getattr(defaults, key), f"optimizer.{key}", getattr(o, key),
                f"has no effect with optimizer.name={o.name} (only {', '.join(users)} reads it): remove it")
    in_range("optimizer.momentum", o.momentum, 0.0, 1.0, high_open=True)
    require(not o.nesterov or o.momentum > 0, "optimizer.nesterov", True, "needs optimizer.momentum > 0")
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
