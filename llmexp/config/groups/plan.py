"""plan group: how the budget is chosen when the trainer gives none, and what the estimate assumes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmexp.accelerators import ACCELERATORS
from llmexp.config.checks import choice, in_range, one_of, positive


@dataclass
class PlanConfig:
    name: str = choice(Literal["chinchilla", "explicit"], "chinchilla")
    tokens_per_param: float = 20.0
    accelerator: str = "h100"  # for the time estimate: a name in llmexp/accelerators.py
    mfu: float = 0.4


def check_plan(p: PlanConfig) -> None:
    positive("plan.tokens_per_param", p.tokens_per_param)
    one_of("plan.accelerator", p.accelerator, ACCELERATORS)
    in_range("plan.mfu", p.mfu, 0.0, 1.0, low_open=True)
